// Article 8: destroy an agreement's material and show the certificate, printable in both languages.
import * as api from "../api.js";
import { t } from "../i18n.js";
import { badge, button, clear, date, dialog, field, h, input, number, pageHeader, section, table, time, toast } from "../ui.js";

async function printable(certificateId) {
  const { blob } = await api.blob(`/admin/v1/destruction-certificates/${encodeURIComponent(certificateId)}.html`);
  const url = URL.createObjectURL(blob);
  window.open(url, "_blank", "noopener");
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function certificateView(c) {
  return section(t("des_certificate"),
    h("div", { class: "certificate", "data-certificate": c.certificate_id },
      h("dl", { class: "facts" },
        h("dt", {}, t("des_certificate_id")), h("dd", {}, h("code", {}, c.certificate_id)),
        h("dt", {}, t("con_agreement")), h("dd", {}, c.agreement_id),
        h("dt", {}, t("des_destroyed_at")), h("dd", {}, time(c.destroyed_at)),
        h("dt", {}, t("des_requested_by")), h("dd", {}, c.requested_by),
        h("dt", {}, t("des_reason")), h("dd", {}, c.reason),
        h("dt", {}, t("des_fingerprints_removed")), h("dd", {}, number(c.fingerprints_removed)),
        h("dt", {}, t("des_derived")), h("dd", {}, number(Array.isArray(c.derived_items) ? c.derived_items.length : c.derived_items)),
        h("dt", {}, t("des_audit_anchor")), h("dd", {}, h("code", {}, c.audit_record_id), h("div", { class: "hash" }, c.audit_chain_head))),
      table([
        { label: t("title"), cell: (i) => i.title },
        { label: "SHA-256", cell: (i) => h("code", { class: "hash" }, i.sha256) },
        { label: t("mat_fingerprints"), class: "num", cell: (i) => number(i.fingerprints) },
      ], c.items || [], { caption: t("des_items") }),
      h("p", {}, button(t("des_print"), () => printable(c.certificate_id).catch((e) => toast(e.message, "bad")),
        { class: "btn btn-primary", "data-action": "print" }))));
}

export async function render(view, ctx) {
  const agreements = await api.all("/admin/v1/agreements");
  view.append(pageHeader(t("des_title"), t("des_intro")));
  const shown = h("div", {});
  const showCertificate = async (id) => {
    try { clear(shown).append(certificateView(await api.get(`/admin/v1/agreements/${encodeURIComponent(id)}/destruction-certificate`))); }
    catch (error) { toast(error.message, "bad"); }
  };
  const destroy = async (a) => {
    const confirmId = input("confirm_id", { required: true, autocomplete: "off" });
    const check = () => confirmId.setCustomValidity(confirmId.value.trim() === a.id ? "" : `${t("des_type_id")}: ${a.id}`);
    confirmId.addEventListener("input", check);
    check();
    const values = await dialog(`${t("des_destroy")}: ${a.title}`, h("div", {},
      h("div", { class: "alert alert-bad" }, t("des_warning")),
      field(t("des_requested_by"), input("requested_by", { required: true, maxlength: 256 })),
      field(t("des_reason"), h("textarea", { name: "reason", required: true, rows: 2, maxlength: 2000 })),
      field(`${t("des_type_id")}: ${a.id}`, confirmId)), { confirmLabel: t("des_destroy"), tone: "danger" });
    if (!values) return;
    try {
      const c = await api.post(`/admin/v1/agreements/${encodeURIComponent(a.id)}/destroy`, { requested_by: values.requested_by, reason: values.reason });
      toast(t("des_done"));
      const target = `#/destruction/${encodeURIComponent(c.agreement_id)}`;
      if (location.hash === target) await ctx.rerender(); else location.hash = target;
    } catch (error) { toast(error.message, "bad"); }
  };
  view.append(section(null, table([
    { label: t("agr_name"), cell: (a) => h("span", {}, a.title, h("small", { class: "muted block" }, a.id)) },
    { label: t("agr_counterparty"), cell: (a) => a.counterparty },
    { label: t("agr_status"), cell: (a) => a.destroyed_at ? badge(`${t("agr_destroyed")} ${date(a.destroyed_at)}`, "bad") : badge(a.terminated_at ? t("agr_terminated") : t("agr_in_term"), a.terminated_at ? "warn" : "ok") },
    { label: t("actions"), cell: (a) => a.destroyed_at
      ? button(t("des_view"), () => showCertificate(a.id), { class: "btn btn-small", "data-action": "view-certificate" })
      : ctx.can("destruction") ? button(t("des_destroy"), () => destroy(a), { class: "btn btn-small btn-danger", "data-action": "destroy" }) : "" },
  ], agreements, { empty: t("agr_none"), rowAttrs: (a) => ({ "data-agreement": a.id }) })));
  shown.className = "destruction-certificate";
  view.append(shown);
  if (ctx.params[0]) await showCertificate(ctx.params[0]);
}
