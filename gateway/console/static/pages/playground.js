// Dry-run scan: which items and spans would match, and the decision for a destination and principal.
// The pasted text stays in this page; the gateway neither forwards nor records it.
import * as api from "../api.js";
import { t } from "../i18n.js";
import { badge, clear, decisionBadge, field, h, pageHeader, section, select, table } from "../ui.js";

function highlighted(text, matches) {
  const spans = matches.filter((m) => m.location === "text" && Number.isInteger(m.start)).sort((a, b) => a.start - b.start);
  const out = h("div", { class: "highlight", "data-role": "highlight" });
  let at = 0;
  spans.forEach((m, n) => {
    const start = Math.max(m.start, at);
    if (start > at) out.append(text.slice(at, start));
    if (m.end > start) out.append(h("mark", { title: `${m.agreement_id || ""} ${m.item_id || m.entity || ""} [${m.start}, ${m.end})`, dataset: { n: n + 1 } }, text.slice(start, m.end)));
    at = Math.max(at, m.end);
  });
  out.append(text.slice(at));
  return out;
}

export async function render(view) {
  const [destinations, principals] = await Promise.all([api.get("/admin/v1/destinations"), api.all("/admin/v1/principals")]);
  const text = h("textarea", { name: "text", rows: 8, required: true, class: "mono" });
  const destination = select("destination", [["", t("pg_any_third_party")], ...destinations.data.map((d) => [d.id, `${d.id}${d.third_party ? "" : ` (${t("dst_internal")})`}`])]);
  const principal = select("principal", [["", t("pg_any_principal")], ...principals.map((p) => [p.id, `${p.id}${p.groups.length ? ` (${p.groups.join(", ")})` : ""}`])]);
  const purpose = select("purpose", [["inference", t("purpose_inference")], ["training", t("purpose_training")]]);
  const result = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "form-grid", "data-form": "scan", onsubmit: async (event) => {
    event.preventDefault();
    clear(result).append(h("p", { class: "loading" }, t("loading")));
    const body = { text: text.value, purpose: purpose.value };
    if (destination.value) body.destination = destination.value;
    if (principal.value) body.principal = principal.value;
    try {
      const r = await api.post("/admin/v1/scan", body);
      clear(result).append(section(t("pg_decision"),
        h("div", { class: "decision-line", "data-decision": r.decision },
          decisionBadge(r.decision), r.code ? h("code", {}, r.code) : null,
          r.articles.length ? h("span", {}, `${t("aud_articles")}: ${r.articles.join(", ")}`) : null,
          r.consent_possible ? badge(t("pg_consent_possible"), "info") : null),
        r.matches.length ? [
          h("h3", {}, t("pg_highlight")), highlighted(body.text, r.matches),
          table([
            { label: "#", class: "num", cell: (m) => r.matches.indexOf(m) + 1 },
            { label: t("con_agreement"), cell: (m) => m.agreement_id || "—" },
            { label: t("aud_item"), cell: (m) => m.item_id || m.entity || "—" },
            { label: t("aud_kind"), cell: (m) => `${m.kind}${m.category ? ` · ${t(`cat_${m.category}`)}` : ""}` },
            { label: t("aud_span"), cell: (m) => `[${m.start}, ${m.end})` },
            { label: t("pg_coverage"), class: "num", cell: (m) => m.item_coverage != null ? `${Math.round(m.item_coverage * 100)}%` : "—" },
            { label: t("aud_code"), cell: (m) => m.reason || "—" },
          ], r.matches, { rowAttrs: () => ({ "data-match": "" }) }),
        ] : h("p", { class: "empty" }, t("pg_no_match"))));
    } catch (error) { clear(result).append(h("div", { class: "alert alert-bad" }, error.message)); }
  } },
  field(t("pg_text"), text),
  h("div", { class: "grid-3" }, field(t("pg_destination"), destination), field(t("pg_principal"), principal), field(t("con_purpose"), purpose)),
  h("button", { type: "submit", class: "btn btn-primary" }, t("pg_scan")));
  view.append(pageHeader(t("pg_title"), t("pg_intro")), section(null, form), result);
}
