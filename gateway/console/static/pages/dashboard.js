// Decisions per day by kind, the agreements matched most, and the consent requests waiting.
import * as api from "../api.js";
import { DECISION_COLORS, hBars, legend, stackedBars } from "../charts.js";
import { t } from "../i18n.js";
import { h, number, pageHeader, section, select } from "../ui.js";

const KINDS = Object.keys(DECISION_COLORS);

export async function render(view, ctx) {
  const days = Number(ctx.params[0]) || 30;
  const [stats, pending] = await Promise.all([
    api.get("/admin/v1/stats", { days }),
    api.get("/admin/v1/consent-requests", { status: "pending", limit: 5 }),
  ]);
  const period = select("days", [7, 30, 90, 365].map((n) => [String(n), `${n} ${t("dash_days")}`]), { "aria-label": t("dash_period") });
  period.value = String(days);
  period.addEventListener("change", () => { location.hash = `#/dashboard/${period.value}`; });
  const total = KINDS.reduce((sum, k) => sum + stats.totals[k], 0);
  view.append(pageHeader(t("dash_title"), null, h("label", { class: "inline" }, `${t("dash_period")} `, period)));
  view.append(h("div", { class: "kpis" },
    h("div", { class: "kpi" }, h("span", {}, t("dash_total")), h("strong", { "data-kpi": "total" }, number(total))),
    ...["block", "consent_required", "allow_marked"].map((k) =>
      h("div", { class: `kpi kpi-${k}` }, h("span", {}, t(`decision_${k}`)), h("strong", { "data-kpi": k }, number(stats.totals[k])))),
    h("a", { class: "kpi kpi-link", href: "#/consents" }, h("span", {}, t("dash_pending")),
      h("strong", { "data-kpi": "pending" }, number(stats.pending_consent_requests.total)))));
  view.append(h("div", { class: "grid-2" },
    section(t("dash_per_day"), total ? stackedBars(stats.days, KINDS, { label: t("dash_per_day") }) : h("p", { class: "empty" }, t("dash_no_data")), legend(KINDS)),
    section(t("dash_top"), stats.top_agreements.length
      ? hBars(stats.top_agreements.map((a) => ({ label: a.counterparty ? `${a.counterparty} · ${a.agreement_id}` : a.agreement_id, value: a.decisions })), { label: t("dash_top") })
      : h("p", { class: "empty" }, t("dash_no_data")))));
  const byAgreement = stats.pending_consent_requests.by_agreement;
  view.append(section(t("dash_pending"),
    byAgreement.length ? hBars(byAgreement.map((a) => ({ label: a.agreement_id, value: a.pending })), { label: t("dash_pending") })
      : h("p", { class: "empty" }, t("con_queue_empty")),
    pending.data.length ? h("ul", { class: "plain-list" }, pending.data.map((r) =>
      h("li", {}, h("strong", {}, r.principal), " → ", r.destination, " · ", r.agreement_id))) : null,
    h("p", {}, h("a", { class: "btn", href: "#/consents" }, t("dash_open_queue")))));
}
