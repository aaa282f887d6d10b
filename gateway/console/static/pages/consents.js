// The queue of consent requests (approve with the evidence reference, or reject: two clicks), and the
// consents on record with their validity and revocation (Article 4).
import * as api from "../api.js";
import { t } from "../i18n.js";
import { badge, button, clear, date, dialog, field, h, input, pageHeader, section, table, time, toast } from "../ui.js";

const GRANTER = "shuhi.granted_by";

function consentState(c) {
  if (c.revoked_at) return ["con_revoked", "neutral"];
  if (c.valid_until && new Date(c.valid_until) < new Date()) return ["con_expired", "warn"];
  return ["con_active", "ok"];
}

function newestFirst(rows) { return rows.slice().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at))); }

function remembered() { try { return localStorage.getItem(GRANTER) || ""; } catch { return ""; } }

function requestCard(r, titles, ctx, reload) {
  const answer = h("div", { class: "answer" });
  const approveForm = () => {
    const reference = input("reference", { required: true, placeholder: "2026-LEG-0142" });
    const granter = input("granted_by", { required: true, value: remembered() });
    const form = h("form", { class: "inline-form", "data-form": "approve", onsubmit: async (event) => {
      event.preventDefault();
      try {
        try { localStorage.setItem(GRANTER, granter.value); } catch { /* storage may be off */ }
        await api.post(`/admin/v1/consent-requests/${r.id}/approve`, { evidence: { reference: reference.value }, granted_by: granter.value });
        toast(t("con_approved"));
        reload();
      } catch (error) { toast(error.message, "bad"); }
    } },
    field(t("con_evidence"), reference), field(t("con_granted_by"), granter),
    h("button", { type: "submit", class: "btn btn-primary", "data-action": "confirm-approve" }, t("con_approve")),
    button(t("cancel"), () => clear(answer), { class: "btn btn-ghost" }));
    clear(answer).append(form);
    reference.focus();
  };
  const rejectForm = () => {
    const reason = input("reason", { required: true });
    const form = h("form", { class: "inline-form", "data-form": "reject", onsubmit: async (event) => {
      event.preventDefault();
      try { await api.post(`/admin/v1/consent-requests/${r.id}/reject`, { reason: reason.value }); toast(t("con_rejected")); reload(); }
      catch (error) { toast(error.message, "bad"); }
    } },
    field(t("con_reject_reason"), reason),
    h("button", { type: "submit", class: "btn btn-danger", "data-action": "confirm-reject" }, t("con_reject")),
    button(t("cancel"), () => clear(answer), { class: "btn btn-ghost" }));
    clear(answer).append(form);
    reason.focus();
  };
  return h("li", { class: "request card", dataset: { request: r.id } },
    h("div", { class: "request-head" },
      h("div", {}, h("strong", {}, r.principal), h("span", { class: "muted" }, ` · ${time(r.created_at)}`)),
      ctx.can("consents") ? h("div", { class: "request-buttons" },
        button(t("con_approve"), approveForm, { class: "btn btn-primary", "data-action": "approve" }),
        button(t("con_reject"), rejectForm, { class: "btn", "data-action": "reject" })) : null),
    h("dl", { class: "facts compact" },
      h("dt", {}, t("con_agreement")), h("dd", {}, h("a", { href: `#/agreements/${encodeURIComponent(r.agreement_id)}` }, titles[r.agreement_id] || r.agreement_id), ` (${r.agreement_id})`),
      h("dt", {}, t("con_destination")), h("dd", {}, r.destination),
      h("dt", {}, t("con_purpose")), h("dd", {}, t(`purpose_${r.purpose}`)),
      h("dt", {}, t("con_items")), h("dd", {}, r.item_ids.length ? r.item_ids.join(", ") : "—")),
    answer);
}

export async function render(view, ctx) {
  view.append(pageHeader(t("con_title"), t("con_intro")));
  const body = h("div", {});
  view.append(body);
  const reload = async () => {
    const [pending, answered, consents, agreements] = await Promise.all([
      api.all("/admin/v1/consent-requests", { status: "pending" }),
      api.get("/admin/v1/consent-requests", { limit: 1000 }),
      api.all("/admin/v1/consents"),
      api.all("/admin/v1/agreements")]);
    const titles = Object.fromEntries(agreements.map((a) => [a.id, a.title]));
    clear(body);
    body.append(section(`${t("con_queue")} (${pending.length})`, pending.length
      ? h("ul", { class: "requests" }, newestFirst(pending).reverse().map((r) => requestCard(r, titles, ctx, reload)))
      : h("p", { class: "empty" }, t("con_queue_empty"))));
    body.append(section(t("con_list"), table([
      { label: t("con_agreement"), cell: (c) => h("span", {}, titles[c.agreement_id] || c.agreement_id, h("small", { class: "muted block" }, c.agreement_id)) },
      { label: t("con_destination"), cell: (c) => c.destinations.join(", ") },
      { label: t("con_purpose"), cell: (c) => t(`purpose_${c.purpose}`) },
      { label: t("con_validity"), cell: (c) => c.valid_until ? t("con_from_to", { from: date(c.valid_from || c.created_at), to: date(c.valid_until) }) : t("con_from_open", { from: date(c.valid_from || c.created_at) }) },
      { label: t("con_evidence_short"), cell: (c) => h("span", {}, c.evidence.reference, h("small", { class: "muted block" }, c.granted_by)) },
      { label: t("con_state"), cell: (c) => { const [k, tone] = consentState(c); return badge(c.revoked_at ? `${t(k)} ${date(c.revoked_at)}` : t(k), tone); } },
      { label: t("actions"), cell: (c) => ctx.can("consents") && !c.revoked_at ? button(t("con_revoke"), async () => {
        if (!await dialog(t("con_revoke"), h("p", {}, t("con_revoke_confirm")), { tone: "danger", confirmLabel: t("con_revoke") })) return;
        try { await api.del(`/admin/v1/consents/${c.id}`); toast(t("saved")); reload(); } catch (error) { toast(error.message, "bad"); }
      }, { class: "btn btn-small", "data-action": "revoke" }) : "" },
    ], newestFirst(consents), { rowAttrs: (c) => ({ "data-consent": c.id }) })));
    const done = newestFirst(answered.data.filter((r) => r.status !== "pending"));
    body.append(section(t("con_history"), table([
      { label: t("con_asked"), cell: (r) => time(r.created_at) },
      { label: t("con_who"), cell: (r) => r.principal },
      { label: t("con_agreement"), cell: (r) => r.agreement_id },
      { label: t("con_destination"), cell: (r) => r.destination },
      { label: t("agr_status"), cell: (r) => badge(t(`status_${r.status}`), r.status === "approved" ? "ok" : "neutral") },
      { label: t("con_reject_reason"), cell: (r) => r.reason || "—" },
    ], done)));
  };
  await reload();
}
