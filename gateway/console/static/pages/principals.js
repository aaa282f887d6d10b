// Principals: who uses the gateway, and their groups (need-to-know, Article 3(3)).
import * as api from "../api.js";
import { t } from "../i18n.js";
import { button, date, dialog, field, h, input, list, pageHeader, section, table, toast } from "../ui.js";

export async function render(view, ctx) {
  const principals = await api.all("/admin/v1/principals");
  const add = async () => {
    const values = await dialog(t("prn_add"), h("div", { class: "form-grid" },
      field(t("prn_id"), input("id", { required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.@+\\-]{0,127}" })),
      field(t("prn_groups"), input("groups", { placeholder: "rd, legal" }))), { confirmLabel: t("create") });
    if (!values) return;
    try { await api.post("/admin/v1/principals", { id: values.id, groups: list(values.groups) }); toast(t("saved")); ctx.rerender(); }
    catch (error) { toast(error.message, "bad"); }
  };
  view.append(pageHeader(t("prn_title"), t("prn_intro"), ctx.can("principals") ? button(t("prn_add"), add, { class: "btn btn-primary", "data-action": "add-principal" }) : null));
  view.append(section(null, table([
    { label: t("id"), cell: (p) => h("strong", {}, p.id) },
    { label: t("prn_groups"), cell: (p) => p.groups.join(", ") || "—" },
    { label: t("created_at"), cell: (p) => date(p.created_at) },
    { label: t("actions"), cell: (p) => ctx.can("principals") ? h("span", { class: "row-actions" },
      h("a", { class: "btn btn-small", href: `#/keys/${encodeURIComponent(p.id)}` }, t("nav_keys")),
      button(t("delete"), async () => {
        if (!await dialog(t("delete"), h("p", {}, `${p.id}: ${t("prn_delete_confirm")}`), { tone: "danger", confirmLabel: t("delete") })) return;
        try { await api.del(`/admin/v1/principals/${encodeURIComponent(p.id)}`); ctx.rerender(); } catch (error) { toast(error.message, "bad"); }
      }, { class: "btn btn-small btn-ghost" })) : "" },
  ], principals)));
}
