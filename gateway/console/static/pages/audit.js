// The audit log: filters, decision details (articles and matches as spans, never text), export,
// and verification of the hash chain with a plain green or red answer.
import * as api from "../api.js";
import { has, language, t } from "../i18n.js";
import {
  button, clear, decisionBadge, dialog, field, h, input, pageHeader, section, select, table, time, toast,
} from "../ui.js";

const PAGE = 50;
const DECISIONS = ["allow", "allow_marked", "redact", "consent_required", "block"];
const KINDS = ["decision", "outcome", "admin"];

function isoDay(d) { return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`; }

function monthRange(offset) {
  const now = new Date();
  const first = new Date(now.getFullYear(), now.getMonth() + offset, 1);
  const last = new Date(now.getFullYear(), now.getMonth() + offset + 1, 0);
  return [isoDay(first), isoDay(last)];
}

// Form values → API filters: days in the browser's time zone, `until` inclusive of its day.
function apiFilters(v) {
  const out = {};
  if (v.since) out.since = new Date(`${v.since}T00:00:00`).toISOString();
  if (v.until) { const end = new Date(`${v.until}T00:00:00`); end.setDate(end.getDate() + 1); out.until = end.toISOString(); }
  for (const k of ["principal", "agreement_id", "decision", "kind"]) if (v[k]) out[k] = v[k];
  return out;
}

function spans(matches) {
  if (!matches || !matches.length) return "—";
  return h("ul", { class: "spans" }, matches.map((m) => h("li", {},
    h("code", {}, m.location || "—"), " ",
    h("span", { class: "span-chip", title: `${m.start}–${m.end}` }, `[${m.start}, ${m.end})`), " ",
    h("span", { class: "muted" }, t("aud_chars", { n: (m.end ?? 0) - (m.start ?? 0) })), " · ",
    m.entity ? h("strong", {}, m.entity) : h("span", {}, m.agreement_id, " / ", m.item_id || "—"),
    m.kind ? h("span", { class: "muted" }, ` (${m.kind}${m.category ? `, ${m.category}` : ""})`) : null)));
}

function details(r) {
  const rows = [
    [t("aud_seq"), r.seq], ["ID", h("code", {}, r.id)], [t("aud_when"), time(r.at)], [t("aud_kind"), t(`kind_${r.kind}`)],
    [t("aud_principal"), r.principal], [t("aud_endpoint"), r.endpoint], [t("con_destination"), r.destination],
    [t("aud_model"), r.model], [t("aud_decision"), r.decision ? decisionBadge(r.decision) : null], [t("aud_code"), r.code],
    [t("aud_articles"), (r.articles || []).join(", ")], [t("con_agreement"), (r.agreements || []).join(", ")],
    [t("aud_matches"), r.matches && r.matches.length ? spans(r.matches) : null],
    [t("aud_decision_id"), r.decision_id], [t("aud_status"), r.upstream_status], [t("aud_latency"), r.latency_ms != null ? `${Math.round(r.latency_ms * 10) / 10} ms` : null],
    [t("aud_action"), r.action], [t("aud_actor"), r.actor ? `${r.actor} (${r.actor_role})` : null], [t("aud_target"), r.target],
    [t("aud_consent"), r.consent_id || r.consent_request_id], [t("aud_hash"), h("code", { class: "hash" }, r.hash)],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  return h("dl", { class: "facts", "data-record": r.id }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

async function download(path, params) {
  const { blob, name } = await api.blob(api.withQuery(path, params));
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  toast(t("aud_exported", { n: blob.size.toLocaleString() }));
}

export async function render(view, ctx) {
  const form = h("form", { class: "filters", "data-form": "audit-filters" },
    field(t("aud_since"), input("since", { type: "date" })),
    field(t("aud_until"), input("until", { type: "date" })),
    field(t("aud_principal"), input("principal", { maxlength: 256 })),
    field(t("aud_agreement"), input("agreement_id", { maxlength: 128 })),
    field(t("aud_decision"), select("decision", [["", t("aud_any")], ...DECISIONS.map((d) => [d, t(`decision_${d}`)])])),
    field(t("aud_kind"), select("kind", [["", t("aud_any")], ...KINDS.map((k) => [k, t(`kind_${k}`)])])),
    h("div", { class: "filter-buttons" },
      h("button", { type: "submit", class: "btn btn-primary" }, t("aud_apply")),
      button(t("aud_this_month"), () => preset(0), { "data-action": "this-month" }),
      button(t("aud_last_month"), () => preset(-1)),
      h("button", { type: "reset", class: "btn btn-ghost" }, t("aud_clear"))));
  const verdict = h("div", { class: "verdict", "aria-live": "polite" });
  const results = h("div", {});
  const values = () => Object.fromEntries(new FormData(form).entries());
  const preset = (offset) => { const [a, b] = monthRange(offset); form.since.value = a; form.until.value = b; show(); };
  form.addEventListener("submit", (e) => { e.preventDefault(); show(); });
  form.addEventListener("reset", () => setTimeout(show, 0));

  view.append(pageHeader(t("aud_title"), t("aud_intro"),
    button(t("aud_verify"), verify, { class: "btn", "data-action": "verify" }),
    button(t("aud_export_csv"), () => download("/admin/v1/audit/export", { format: "csv", ...apiFilters(values()) }).catch((e) => toast(e.message, "bad")), { class: "btn", "data-action": "export-csv" }),
    button(t("aud_export_jsonl"), () => download("/admin/v1/audit/export", { format: "jsonl", ...apiFilters(values()) }).catch((e) => toast(e.message, "bad")), { class: "btn", "data-action": "export-jsonl" })));
  view.append(verdict, section(null, form), results);

  async function verify() {
    clear(verdict).append(h("p", { class: "loading" }, t("loading")));
    try {
      const r = await api.get("/admin/v1/audit/verify");
      clear(verdict).append(r.ok
        ? h("div", { class: "alert alert-ok", "data-verify": "ok" }, h("strong", {}, "✔ ", t("aud_verify_ok", { n: r.records.toLocaleString() })), h("div", { class: "hash" }, `${t("aud_head")}: ${r.head}`))
        : h("div", { class: "alert alert-bad", "data-verify": "bad" }, h("strong", {}, "✘ ", t("aud_verify_bad", { seq: r.first_bad.seq, reason: has(`verify_${r.first_bad.reason}`) ? t(`verify_${r.first_bad.reason}`) : r.first_bad.reason })),
          language() === "en" && r.first_bad.detail ? h("div", {}, r.first_bad.detail) : null));
    } catch (error) { clear(verdict).append(h("div", { class: "alert alert-bad" }, error.message)); }
  }

  function showRecords(records, title, more) {
    clear(results).append(section(title, table([
      { label: t("aud_seq"), class: "num", cell: (r) => r.seq },
      { label: t("aud_when"), cell: (r) => time(r.at) },
      { label: t("aud_kind"), cell: (r) => t(`kind_${r.kind}`) },
      { label: t("aud_principal"), cell: (r) => r.principal || r.actor || "—" },
      { label: t("aud_decision"), cell: (r) => r.decision ? decisionBadge(r.decision) : (r.action || (r.upstream_status ? `HTTP ${r.upstream_status}` : "—")) },
      { label: t("aud_articles"), cell: (r) => (r.articles || []).join(", ") || "—" },
      { label: t("con_agreement"), cell: (r) => (r.agreements || []).join(", ") || "—" },
      { label: t("aud_matches"), class: "num", cell: (r) => (r.matches || []).length || "—" },
    ], records, { empty: t("aud_no_records"), rowAttrs: (r) => ({ class: "clickable", tabindex: 0, "data-seq": r.seq, "data-id": r.id,
      onclick: () => dialog(t("aud_detail"), details(r), { confirmLabel: t("close"), info: true }),
      onkeydown: (e) => { if (e.key === "Enter") dialog(t("aud_detail"), details(r), { confirmLabel: t("close"), info: true }); } }) }),
    more ? h("p", {}, button(more.label, more.go, { "data-action": "more" })) : null));
  }

  async function latest(before) {  // newest first, paging backwards by sequence number
    const head = before ?? (await api.get("/admin/v1/stats", { days: 1 })).audit.head_seq + 1;
    const cursor = Math.max(0, head - 1 - PAGE);
    const page = await api.get("/admin/v1/audit", { cursor: String(cursor), limit: PAGE });
    const records = page.data.filter((r) => r.seq < head).reverse();
    const oldest = records.length ? records[records.length - 1].seq : 0;
    showRecords(records, t("aud_latest"), oldest > 1 && cursor > 0 ? { label: t("aud_older"), go: () => latest(oldest) } : null);
  }

  async function filtered(filters, cursor) {
    const page = await api.get("/admin/v1/audit", { ...filters, limit: PAGE, cursor });
    showRecords(page.data, t("aud_filtered"), page.next_cursor ? { label: t("aud_newer"), go: () => filtered(filters, page.next_cursor) } : null);
  }

  async function show() {
    clear(results).append(h("p", { class: "loading" }, t("loading")));
    try {
      const filters = apiFilters(values());
      if (Object.keys(filters).length) await filtered(filters, null); else await latest();
    } catch (error) { clear(results).append(h("div", { class: "alert alert-bad" }, error.message)); }
  }
  await show();
}
