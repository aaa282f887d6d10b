// Material under an agreement: text and files (several at once, with progress), provisional oral
// disclosures and their written-notice deadline (Article 2(1)(6)), exclusions (2(2)), record sets.
import * as api from "../api.js";
import { t } from "../i18n.js";
import {
  badge, button, clear, date, dialog, field, h, input, number, pageHeader, section, select, table, toast, todayISO,
} from "../ui.js";

const CATEGORIES = ["ai_technology", "data", "source_code", "business", "marked", "oral"];
const REASONS = ["public_at_disclosure", "became_public", "previously_held", "third_party", "independently_developed"];
const NOTICE_DAYS = 30;
const DAY = 864e5;

export function noticeDaysLeft(item, now = new Date()) {
  if (!item.provisional || item.written_notice_at || !item.disclosed_at) return null;
  const due = new Date(item.disclosed_at).getTime() + NOTICE_DAYS * DAY;
  return Math.ceil((due - now.getTime()) / DAY);
}

function noticeCell(item, ctx, reload) {
  if (!item.provisional) return "—";
  if (item.written_notice_at) return badge(`${t("mat_notice_recorded")} ${date(item.written_notice_at)}`, "ok");
  const left = noticeDaysLeft(item);
  const tone = left < 0 ? "bad" : left <= 7 ? "warn" : "info";
  return h("div", { class: "stack" },
    badge(left < 0 ? t("mat_overdue", { n: -left }) : t("mat_days_left", { n: left }), tone),
    ctx.can("material") && left >= 0 ? button(t("mat_confirm_notice"), async () => {
      const values = await dialog(t("mat_confirm_notice"), field(t("mat_notice_on"), input("on", { type: "date", required: true, value: todayISO() })));
      if (!values) return;
      try { await api.patch(`/admin/v1/items/${item.id}`, { written_notice_at: `${values.on}T00:00:00Z` }); toast(t("saved")); reload(); }
      catch (error) { toast(error.message, "bad"); }
    }, { class: "btn btn-small", "data-action": "confirm-notice" }) : null);
}

function categorySelect() { return select("category", CATEGORIES.map((c) => [c, t(`cat_${c}`)]), { required: true }); }

export async function render(view, ctx) {
  const agreements = await api.all("/admin/v1/agreements");
  const chosen = ctx.params[0] || (agreements[0] && agreements[0].id);
  const picker = select("agreement", agreements.map((a) => [a.id, `${a.title} (${a.id})`]), { "aria-label": t("agr_pick") });
  picker.value = chosen || "";
  picker.addEventListener("change", () => { location.hash = `#/material/${encodeURIComponent(picker.value)}`; });
  view.append(pageHeader(t("mat_title"), t("mat_intro"), h("label", { class: "inline" }, `${t("con_agreement")} `, picker)));
  if (!chosen) { view.append(section(null, h("p", { class: "empty" }, t("agr_none")))); return; }
  const agreement = agreements.find((a) => a.id === chosen) || await api.get(`/admin/v1/agreements/${encodeURIComponent(chosen)}`);
  const base = `/admin/v1/agreements/${encodeURIComponent(chosen)}`;
  const writable = ctx.can("material") && !agreement.destroyed_at;
  if (agreement.destroyed_at) view.append(h("div", { class: "alert alert-warn" }, t("mat_destroyed")));
  // Tables are redrawn after each change; the forms stay, so upload progress stays in view.
  const itemsBox = h("div", {});
  const exclusionsBox = h("div", {});
  const recordSetsBox = h("div", {});
  const reload = async () => {
    const [items, exclusions, recordSets] = await Promise.all([
      api.all(`${base}/items`), api.get(`${base}/exclusions`), api.get(`${base}/record-sets`)]);
    const provisional = items.filter((i) => noticeDaysLeft(i) !== null);
    clear(itemsBox).append(section(`${t("mat_items")} (${items.length})`, table([
      { label: t("title"), cell: (i) => h("span", {}, i.title, i.filename && i.filename !== i.title ? h("small", { class: "muted block" }, i.filename) : null) },
      { label: t("mat_category"), cell: (i) => t(`cat_${i.category}`) },
      { label: t("mat_source"), cell: (i) => t(`source_${i.source}`) },
      { label: t("mat_fingerprints"), class: "num", cell: (i) => number(i.fingerprints) },
      { label: t("mat_chars"), class: "num", cell: (i) => number(i.chars) },
      { label: t("mat_notice_due"), cell: (i) => noticeCell(i, ctx, reload) },
      { label: t("actions"), cell: (i) => writable ? button(t("mat_remove"), async () => {
        if (!await dialog(t("mat_remove"), h("p", {}, t("mat_remove_confirm")), { tone: "danger" })) return;
        try { await api.del(`/admin/v1/items/${i.id}`); reload(); } catch (error) { toast(error.message, "bad"); }
      }, { class: "btn btn-small btn-ghost" }) : "" },
    ], items, { rowAttrs: (i) => ({ "data-item": i.id, class: noticeDaysLeft(i) !== null ? "row-provisional" : "" }) }),
    provisional.length ? h("p", { class: "muted" }, `${t("mat_provisional")}: ${provisional.length}`) : null));
    clear(exclusionsBox).append(table([
      { label: t("mat_reason"), cell: (e) => t(`reason_${e.reason}`) },
      { label: t("mat_fingerprints"), class: "num", cell: (e) => number(e.fingerprints) },
      { label: t("created_at"), cell: (e) => date(e.created_at) },
    ], exclusions.data, { rowAttrs: (e) => ({ "data-exclusion": e.id }) }));
    clear(recordSetsBox).append(table([
      { label: t("mat_file"), cell: (r) => r.filename || r.id },
      { label: t("mat_columns_short"), cell: (r) => r.columns.join(", ") },
      { label: t("mat_rows"), class: "num", cell: (r) => number(r.rows) },
      { label: t("mat_cells"), class: "num", cell: (r) => r.min_cells },
    ], recordSets.data, { rowAttrs: (r) => ({ "data-record-set": r.id }) }));
  };
  view.append(itemsBox);
  if (writable) view.append(h("div", { class: "grid-2" }, textForm(base, reload), uploadForm(base, reload)));
  view.append(h("div", { class: "grid-2" },
    section(t("mat_exclusions"), exclusionsBox, writable ? exclusionForm(base, reload) : null),
    section(t("mat_record_sets"), recordSetsBox, writable ? recordSetForm(base, reload) : null)));
  await reload();
}

function textForm(base, reload) {
  const provisional = input("provisional", { type: "checkbox" });
  const form = h("form", { class: "form-grid", "data-form": "register-text", onsubmit: async (event) => {
    event.preventDefault();
    const v = Object.fromEntries(new FormData(form).entries());
    const payload = { title: v.title, category: v.category };
    if (v.text.trim()) payload.text = v.text;
    const terms = v.terms.split("\n").map((s) => s.trim()).filter(Boolean);
    if (terms.length) payload.terms = terms;
    if (provisional.checked || v.category === "oral") {
      payload.provisional = true;
      payload.disclosed_at = `${v.disclosed_at || todayISO()}T00:00:00Z`;
    }
    try { await api.post(`${base}/items`, payload); toast(t("mat_uploaded")); form.reset(); reload(); }
    catch (error) { toast(error.message, "bad"); }
  } },
  field(t("title"), input("title", { required: true })),
  field(t("mat_category"), categorySelect()),
  field(t("mat_text"), h("textarea", { name: "text", rows: 5 })),
  field(t("mat_terms"), h("textarea", { name: "terms", rows: 2 })),
  h("label", { class: "check" }, provisional, t("mat_provisional")),
  field(t("mat_disclosed_at"), input("disclosed_at", { type: "date", value: todayISO() })),
  h("button", { type: "submit", class: "btn btn-primary" }, t("mat_register_text")));
  return section(t("mat_register_text"), form);
}

function uploadForm(base, reload) {
  const files = input("files", { type: "file", multiple: true, required: true });
  const category = categorySelect();
  const progress = h("ul", { class: "uploads", "aria-live": "polite" });
  const form = h("form", { class: "form-grid", "data-form": "upload", onsubmit: async (event) => {
    event.preventDefault();
    clear(progress);
    const chosen = [...files.files];
    const rows = chosen.map((f) => {
      const bar = h("progress", { max: 1, value: 0 });
      const state = h("span", { class: "upload-state" }, "0%");
      progress.append(h("li", { dataset: { file: f.name } }, h("span", { class: "upload-name" }, f.name), bar, state));
      return { f, bar, state };
    });
    let ok = 0;
    for (const { f, bar, state } of rows) {  // one after another: the registry takes one file at a time
      const data = new FormData();
      data.append("file", f);
      data.append("title", f.name);
      data.append("category", category.value);
      try {
        const made = await api.upload(`${base}/items`, data, (p) => { bar.value = p; state.textContent = `${Math.round(p * 100)}%`; });
        state.textContent = `${t("mat_uploaded")} · ${number(made.fingerprints)} ${t("mat_fingerprints")}`;
        state.className = "upload-state ok";
        ok += 1;
      } catch (error) {
        state.textContent = `${t("mat_failed")}: ${error.message}`;
        state.className = "upload-state bad";
      }
    }
    if (ok) { toast(`${t("mat_uploaded")}: ${ok}/${rows.length}`); await reload(); }
  } },
  field(t("mat_files"), files, t("mat_upload_help")),
  field(t("mat_category"), category),
  h("button", { type: "submit", class: "btn btn-primary" }, t("mat_start_upload")));
  return section(t("mat_upload"), form, progress);
}

function exclusionForm(base, reload) {
  const form = h("form", { class: "form-grid", "data-form": "exclusion", onsubmit: async (event) => {
    event.preventDefault();
    const v = Object.fromEntries(new FormData(form).entries());
    try { await api.post(`${base}/exclusions`, { text: v.text, reason: v.reason }); toast(t("saved")); form.reset(); reload(); }
    catch (error) { toast(error.message, "bad"); }
  } },
  field(t("mat_exclusion_text"), h("textarea", { name: "text", rows: 3, required: true })),
  field(t("mat_reason"), select("reason", REASONS.map((r) => [r, t(`reason_${r}`)]))),
  h("button", { type: "submit", class: "btn" }, t("mat_add_exclusion")));
  return form;
}

function recordSetForm(base, reload) {
  const file = input("file", { type: "file", accept: ".csv,.xlsx,.xlsm", required: true });
  const form = h("form", { class: "form-grid", "data-form": "record-set", onsubmit: async (event) => {
    event.preventDefault();
    const v = Object.fromEntries(new FormData(form).entries());
    const data = new FormData();
    data.append("file", file.files[0]);
    data.append("columns", JSON.stringify(v.columns.split(/[,、]/).map((s) => s.trim()).filter(Boolean)));
    data.append("min_cells", v.min_cells || "2");
    try { await api.upload(`${base}/record-sets`, data, () => {}); toast(t("saved")); form.reset(); reload(); }
    catch (error) { toast(error.message, "bad"); }
  } },
  field(t("mat_record_file"), file),
  field(t("mat_columns"), input("columns", { required: true })),
  field(t("mat_min_cells"), input("min_cells", { type: "number", min: 1, value: 2 })),
  h("button", { type: "submit", class: "btn" }, t("mat_add_record_set")));
  return form;
}
