// Destinations: the AI services calls go to; third parties fall under Article 4.
import * as api from "../api.js";
import { t } from "../i18n.js";
import { badge, button, dialog, field, h, input, list, pageHeader, section, select, table, toast } from "../ui.js";

export async function render(view, ctx) {
  const found = await api.get("/admin/v1/destinations");
  const add = async () => {
    const values = await dialog(t("dst_add"), h("div", { class: "form-grid" },
      field(t("id"), input("id", { required: true, pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}" })),
      field(t("dst_base_url"), input("base_url", { type: "url", required: true, placeholder: "https://api.openai.com/v1" })),
      field(t("dst_format"), select("api_format", [["openai", "OpenAI"], ["anthropic", "Anthropic"]])),
      field(t("dst_models"), input("models", { placeholder: "gpt-4o*, gpt-4.1*" })),
      field(t("dst_key_env"), input("api_key_env", { placeholder: "OPENAI_API_KEY" })),
      h("label", { class: "check" }, input("third_party", { type: "checkbox", checked: true }), t("dst_third_party")),
      h("label", { class: "check" }, input("trains_on_inputs", { type: "checkbox" }), t("dst_trains"))), { confirmLabel: t("create") });
    if (!values) return;
    try {
      await api.post("/admin/v1/destinations", {
        id: values.id, base_url: values.base_url, api_format: values.api_format, models: list(values.models),
        api_key_env: values.api_key_env || null, third_party: values.third_party === "on", trains_on_inputs: values.trains_on_inputs === "on",
      });
      toast(t("saved"));
      ctx.rerender();
    } catch (error) { toast(error.message, "bad"); }
  };
  view.append(pageHeader(t("dst_title"), t("dst_intro"), ctx.can("destinations") ? button(t("dst_add"), add, { class: "btn btn-primary" }) : null));
  view.append(section(null, table([
    { label: t("id"), cell: (d) => h("strong", {}, d.id) },
    { label: t("dst_base_url"), cell: (d) => h("code", {}, d.base_url) },
    { label: t("dst_format"), cell: (d) => d.api_format },
    { label: t("dst_models"), cell: (d) => d.models.join(", ") || "—" },
    { label: t("dst_third_party"), cell: (d) => d.third_party ? badge(t("dst_third_party"), "warn") : badge(t("dst_internal"), "ok") },
    { label: t("dst_trains"), cell: (d) => d.trains_on_inputs ? badge(t("yes"), "bad") : t("no") },
    { label: t("dst_ready"), cell: (d) => d.ready ? badge("✔", "ok") : badge(`${t("dst_missing_key")}: ${d.api_key_env}`, "bad") },
    { label: t("actions"), cell: (d) => ctx.can("destinations") ? button(t("delete"), async () => {
      if (!await dialog(t("delete"), h("p", {}, d.id), { tone: "danger", confirmLabel: t("delete") })) return;
      try { await api.del(`/admin/v1/destinations/${encodeURIComponent(d.id)}`); ctx.rerender(); } catch (error) { toast(error.message, "bad"); }
    }, { class: "btn btn-small btn-ghost" }) : "" },
  ], found.data)));
}
