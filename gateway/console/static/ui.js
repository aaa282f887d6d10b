// Small DOM helpers: elements, tables, forms, dialogs, toasts. Text always goes in as text, never as HTML.
import { language, t } from "./i18n.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

export function date(value) {
  if (!value) return "—";
  return String(value).slice(0, 10);
}

export function time(value) {
  if (!value) return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(language() === "ja" ? "ja-JP" : "en-GB", { dateStyle: "medium", timeStyle: "short" });
}

export function number(n) { return Number(n || 0).toLocaleString(language() === "ja" ? "ja-JP" : "en-US"); }

export function badge(text, tone = "neutral") { return h("span", { class: `badge badge-${tone}` }, text); }

export const DECISION_TONE = { allow: "ok", allow_marked: "info", redact: "warn", consent_required: "warn", block: "bad" };

export function decisionBadge(decision) {
  return decision ? badge(t(`decision_${decision}`), DECISION_TONE[decision] || "neutral") : "—";
}

export function table(columns, rows, { empty = t("none"), caption = null, rowAttrs = null } = {}) {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class || "" }, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {},
      columns.map((c) => h("td", { class: c.class || "", "data-label": c.label }, c.cell(row))))))));
}

let fieldSeq = 0;
export function field(label, control, hint = null) {
  const id = control.id || `f${++fieldSeq}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("small", {}, hint) : null);
}

export function input(name, attrs = {}) { return h("input", { name, ...attrs }); }

export function select(name, options, attrs = {}) {
  return h("select", { name, ...attrs }, options.map(([value, label]) => h("option", { value }, label)));
}

export function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", class: "btn", onclick, ...attrs }, label);
}

export function section(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

export function pageHeader(title, intro, ...actions) {
  return h("header", { class: "page-header" },
    h("div", {}, h("h1", {}, title), intro ? h("p", { class: "intro" }, intro) : null),
    actions.length ? h("div", { class: "page-actions" }, actions) : null);
}

export function toast(message, tone = "ok") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast toast-${tone}`, role: tone === "bad" ? "alert" : "status" }, message);
  box.append(el);
  while (box.children.length > 3) box.firstElementChild.remove();
  setTimeout(() => el.remove(), tone === "bad" ? 9000 : 4000);
}

export function errorBox(error) {
  return h("div", { class: "alert alert-bad", role: "alert" }, error.message || String(error));
}

// A modal dialog; resolves with the form's values on confirm, null on cancel.
export function dialog(title, body, { confirmLabel = t("confirm"), tone = "primary", info = false } = {}) {
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog" },
      h("h2", {}, title), body,
      h("div", { class: "dialog-actions" },
        info ? null : h("button", { type: "button", class: "btn", value: "cancel", onclick: () => { dlg.close(); } }, t("cancel")),
        h("button", { type: "submit", class: `btn btn-${tone}`, value: "ok" }, confirmLabel)));
    const dlg = h("dialog", { class: "dialog" }, form);
    let result = null;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!form.reportValidity()) return;
      result = Object.fromEntries(new FormData(form).entries());
      dlg.close();
    });
    dlg.addEventListener("close", () => { dlg.remove(); resolve(result); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function formValues(form) { return Object.fromEntries(new FormData(form).entries()); }

export function list(value) {
  return String(value || "").split(/[,\n、]/).map((s) => s.trim()).filter(Boolean);
}

export function todayISO() {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}
