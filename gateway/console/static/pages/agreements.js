// Agreements: register, amend, terminate; term and survival (Article 11) drawn as a timeline.
import * as api from "../api.js";
import { agreementPhases, timeline } from "../charts.js";
import { t } from "../i18n.js";
import { badge, button, date, dialog, field, h, input, list, pageHeader, section, table, toast, todayISO } from "../ui.js";

export function status(a) {
  if (a.destroyed_at) return ["agr_destroyed", "bad"];
  const { start, termEnd, survivalEnd } = agreementPhases(a);
  const now = new Date();
  if (now < start) return ["agr_not_started", "neutral"];
  if (now < termEnd) return ["agr_in_term", "ok"];
  if (now < survivalEnd) return [a.terminated_at ? "agr_terminated" : "agr_surviving", "warn"];
  return ["agr_ended", "neutral"];
}

function statusBadge(a) { const [key, tone] = status(a); return badge(t(key), tone); }

function agreementFields(a = {}) {
  return h("div", { class: "form-grid" },
    a.id ? null : field(t("agr_id"), input("id", { placeholder: "nda-mirai", pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,127}" }), t("optional")),
    field(t("agr_name"), input("title", { required: true, value: a.title || "" })),
    field(t("agr_counterparty"), input("counterparty", { required: true, value: a.counterparty || "" })),
    field(t("agr_purpose"), h("textarea", { name: "purpose", required: true, rows: 2 }, a.purpose || "")),
    field(t("agr_effective"), input("effective_date", { type: "date", required: true, value: a.effective_date || todayISO() })),
    field(t("agr_term_years"), input("term_years", { type: "number", min: 0, max: 100, required: true, value: a.term_years ?? 3 })),
    field(t("agr_survival_years"), input("survival_years", { type: "number", min: 0, max: 100, required: true, value: a.survival_years ?? 2 })),
    field(t("agr_groups"), input("authorized_groups", { value: (a.authorized_groups || []).join(", ") }), t("agr_everyone")),
    field(t("agr_principals"), input("authorized_principals", { value: (a.authorized_principals || []).join(", ") })));
}

function body(values, creating) {
  const out = {
    title: values.title, counterparty: values.counterparty, purpose: values.purpose, effective_date: values.effective_date,
    term_years: Number(values.term_years), survival_years: Number(values.survival_years),
    authorized_groups: list(values.authorized_groups), authorized_principals: list(values.authorized_principals),
  };
  if (creating && values.id) out.id = values.id;
  return out;
}

async function create(ctx) {
  const values = await dialog(t("agr_new"), agreementFields(), { confirmLabel: t("create") });
  if (!values) return;
  try {
    const made = await api.post("/admin/v1/agreements", body(values, true));
    toast(t("agr_created"));
    location.hash = `#/agreements/${encodeURIComponent(made.id)}`;
  } catch (error) { toast(error.message, "bad"); }
}

export async function render(view, ctx) {
  if (ctx.params[0]) return detail(view, ctx, ctx.params[0]);
  const agreements = await api.all("/admin/v1/agreements");
  view.append(pageHeader(t("agr_title"), t("agr_intro"),
    ctx.can("agreements") ? button(t("agr_new"), () => create(ctx), { class: "btn btn-primary", "data-action": "new-agreement" }) : null));
  view.append(section(null, table([
    { label: t("agr_name"), cell: (a) => h("a", { href: `#/agreements/${encodeURIComponent(a.id)}` }, a.title, h("small", { class: "muted block" }, a.id)) },
    { label: t("agr_counterparty"), cell: (a) => a.counterparty },
    { label: t("agr_status"), cell: statusBadge },
    { label: t("agr_timeline"), class: "timeline-cell", cell: (a) => timeline(a, { width: 420 }) },
  ], agreements, { empty: t("agr_none") })));
}

async function detail(view, ctx, id) {
  const a = await api.get(`/admin/v1/agreements/${encodeURIComponent(id)}`);
  const editable = ctx.can("agreements") && !a.destroyed_at;
  view.append(pageHeader(a.title, `${a.counterparty} · ${a.id}`,
    h("a", { class: "btn", href: `#/material/${encodeURIComponent(a.id)}` }, t("agr_material")),
    editable ? button(t("agr_amend"), () => amend(a, ctx), { "data-action": "amend" }) : null,
    editable && !a.terminated_at ? button(t("agr_terminate"), () => terminate(a, ctx), { class: "btn btn-danger", "data-action": "terminate" }) : null));
  const { termEnd, survivalEnd } = agreementPhases(a);
  view.append(section(t("agr_timeline"), timeline(a), h("div", { class: "legend" },
    h("span", { class: "swatch phase-term" }), t("agr_term"), " ", h("span", { class: "swatch phase-survival" }), t("agr_survival"))));
  view.append(section(null, h("dl", { class: "facts" },
    h("dt", {}, t("agr_status")), h("dd", {}, statusBadge(a)),
    h("dt", {}, t("agr_purpose")), h("dd", {}, a.purpose),
    h("dt", {}, t("agr_effective")), h("dd", {}, a.effective_date),
    h("dt", {}, t("agr_term")), h("dd", {}, `${a.effective_date} – ${termEnd.toISOString().slice(0, 10)} (${a.term_years})`),
    h("dt", {}, t("agr_survival")), h("dd", {}, `– ${survivalEnd.toISOString().slice(0, 10)} (${a.survival_years})`),
    a.terminated_at ? [h("dt", {}, t("agr_terminate_on")), h("dd", {}, date(a.terminated_at))] : null,
    h("dt", {}, t("agr_groups")), h("dd", {}, a.authorized_groups.join(", ") || t("agr_everyone")),
    h("dt", {}, t("agr_principals")), h("dd", {}, a.authorized_principals.join(", ") || "—"))));
}

async function amend(a, ctx) {
  const values = await dialog(t("agr_amend"), agreementFields(a), { confirmLabel: t("save") });
  if (!values) return;
  try { await api.patch(`/admin/v1/agreements/${encodeURIComponent(a.id)}`, body(values, false)); toast(t("agr_amended")); ctx.rerender(); }
  catch (error) { toast(error.message, "bad"); }
}

async function terminate(a, ctx) {
  const values = await dialog(t("agr_terminate"), h("div", {}, h("p", {}, t("agr_terminate_confirm")),
    field(t("agr_terminate_on"), input("terminated_at", { type: "date", required: true, value: todayISO() }))),
  { confirmLabel: t("agr_terminate"), tone: "danger" });
  if (!values) return;
  try {
    await api.patch(`/admin/v1/agreements/${encodeURIComponent(a.id)}`, { terminated_at: `${values.terminated_at}T00:00:00Z` });
    toast(t("agr_amended"));
    ctx.rerender();
  } catch (error) { toast(error.message, "bad"); }
}
