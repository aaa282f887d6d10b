// Gateway keys: issue one for a principal (shown once), list by prefix, revoke.
import * as api from "../api.js";
import { t } from "../i18n.js";
import { button, clear, date, dialog, field, h, pageHeader, section, select, table, toast } from "../ui.js";

export async function render(view, ctx) {
  const principals = await api.all("/admin/v1/principals");
  const listed = h("div", {});
  const reload = async () => {
    const keys = await api.all("/admin/v1/keys");
    clear(listed).append(section(null, table([
      { label: t("id"), cell: (k) => h("code", {}, k.id) },
      { label: t("key_for"), cell: (k) => k.principal },
      { label: t("key_prefix"), cell: (k) => h("code", {}, `${k.prefix}…`) },
      { label: t("created_at"), cell: (k) => date(k.created_at) },
      { label: t("actions"), cell: (k) => ctx.can("keys") ? button(t("key_revoke"), async () => {
        if (!await dialog(t("key_revoke"), h("p", {}, `${k.prefix}… (${k.principal}): ${t("key_revoke_confirm")}`), { tone: "danger", confirmLabel: t("key_revoke") })) return;
        try { await api.del(`/admin/v1/keys/${encodeURIComponent(k.id)}`); await reload(); } catch (error) { toast(error.message, "bad"); }
      }, { class: "btn btn-small btn-ghost", "data-action": "revoke-key" }) : "" },
    ], keys, { rowAttrs: (k) => ({ "data-key-id": k.id }) })));
  };
  view.append(pageHeader(t("key_title"), t("key_intro")));
  if (ctx.can("keys")) {
    const who = select("principal", principals.map((p) => [p.id, p.id]), { required: true });
    if (ctx.params[0]) who.value = ctx.params[0];
    const shown = h("div", { "aria-live": "polite" });
    const issue = async () => {
      try {
        const made = await api.post("/admin/v1/keys", { principal: who.value });
        const code = h("code", { class: "secret", "data-key": made.id }, made.key);
        clear(shown).append(h("div", { class: "alert alert-warn once" },
          h("strong", {}, t("key_shown_once")), h("div", { class: "secret-row" }, code,
            button(t("key_copy"), async () => {
              try { await navigator.clipboard.writeText(made.key); toast(t("key_copied")); } catch { window.getSelection().selectAllChildren(code); }
            }, { class: "btn btn-small" }))));
        await reload();
      } catch (error) { toast(error.message, "bad"); }
    };
    view.append(section(t("key_new"), h("div", { class: "inline-form" }, field(t("key_for"), who),
      button(t("key_new"), issue, { class: "btn btn-primary", "data-action": "issue-key" })), shown));
  }
  view.append(listed);
  await reload();
}
