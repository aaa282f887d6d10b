// The console's shell: sign-in, navigation, language switch, and a hash router over the pages.
import * as api from "./api.js";
import { initialLanguage, language, setLanguage, t } from "./i18n.js";
import { button, clear, errorBox, field, h } from "./ui.js";

const ALL = ["admin", "legal", "auditor"];
const PAGES = [
  { id: "dashboard", roles: ALL, icon: "◧" },
  { id: "agreements", roles: ALL, icon: "§" },
  { id: "material", roles: ALL, icon: "▤" },
  { id: "consents", roles: ALL, icon: "✓" },
  { id: "audit", roles: ["admin", "auditor"], icon: "≣" },
  { id: "destruction", roles: ALL, icon: "✕" },
  { id: "playground", roles: ["admin", "legal"], icon: "⌕" },
  { id: "destinations", roles: ALL, icon: "⇢" },
  { id: "principals", roles: ALL, icon: "☺" },
  { id: "keys", roles: ["admin", "auditor"], icon: "⚿" },
];

const root = document.getElementById("app");
let session = null;

function route() {
  const [id, ...rest] = (location.hash.replace(/^#\/?/, "") || "dashboard").split("/");
  return { id, params: rest.map(decodeURIComponent) };
}

function allowed(page) { return session && page.roles.includes(session.role); }

// What the role may change: legal staff run agreements, material, consents and destruction; admins everything.
export function can(what) {
  if (!session) return false;
  if (session.role === "admin") return true;
  return session.role === "legal" && ["agreements", "material", "consents", "destruction", "scan"].includes(what);
}

function languageSwitch() {
  return h("div", { class: "lang-switch", role: "group", "aria-label": t("language") },
    ["ja", "en"].map((lang) => h("button", {
      type: "button", class: lang === language() ? "active" : "", "aria-pressed": String(lang === language()),
      lang, onclick: () => { setLanguage(lang); render(); },
    }, lang === "ja" ? "日本語" : "English")));
}

function signIn(problem = null) {
  clear(root);
  const tokenInput = h("input", { type: "password", name: "token", required: true, autocomplete: "off", spellcheck: "false" });
  const form = h("form", { class: "signin card", onsubmit: async (event) => {
    event.preventDefault();
    api.setToken(tokenInput.value.trim());
    await start();
  } },
  h("div", { class: "brand brand-large" }, h("img", { src: "/console/static/logo.svg", alt: "" }),
    h("div", {}, h("strong", {}, t("app_name")), h("span", {}, t("app_tagline")))),
  problem ? errorBox(problem) : null,
  field(t("token"), tokenInput, t("token_help")),
  h("button", { type: "submit", class: "btn btn-primary btn-block" }, t("sign_in")),
  languageSwitch());
  root.append(h("main", { class: "signin-page" }, form));
  tokenInput.focus();
}

async function start() {
  if (!api.token()) { signIn(); return; }
  try {
    session = await api.get("/console/session");
  } catch (error) {
    api.setToken(null);
    session = null;
    signIn(error);
    return;
  }
  render();
}

function nav(current) {
  return h("nav", { class: "sidebar", "aria-label": "Shuhi" },
    h("a", { class: "brand", href: "#/dashboard" }, h("img", { src: "/console/static/logo.svg", alt: "" }),
      h("div", {}, h("strong", {}, t("app_name")))),
    h("ul", {}, PAGES.filter(allowed).map((p) => h("li", {},
      h("a", { href: `#/${p.id}`, class: p.id === current ? "active" : "", "aria-current": p.id === current ? "page" : false,
        dataset: { page: p.id } }, h("span", { class: "icon", "aria-hidden": "true" }, p.icon), t(`nav_${p.id}`))))),
    h("div", { class: "sidebar-foot" },
      h("div", { class: "who" }, `${t("signed_in_as")}: `, h("strong", { "data-role": session.role }, t(`role_${session.role}`))),
      languageSwitch(),
      button(t("sign_out"), () => { api.setToken(null); session = null; location.hash = ""; signIn(); }, { class: "btn btn-ghost" })));
}

let renderCount = 0;
async function render() {
  if (!session) { signIn(); return; }
  const { id, params } = route();
  const page = PAGES.find((p) => p.id === id && allowed(p)) || PAGES[0];
  const mine = ++renderCount;
  const main = h("main", { class: "content", id: "content", tabindex: "-1" }, h("p", { class: "loading" }, t("loading")));
  clear(root).append(h("div", { class: "layout" }, nav(page.id), main));
  document.title = `${t(`nav_${page.id}`)} — Shuhi`;
  try {
    const module = await import(`./pages/${page.id}.js`);
    if (mine !== renderCount) return;
    const view = h("div", { class: "page", dataset: { page: page.id } });
    await module.render(view, { role: session.role, params, can, rerender: render });
    if (mine !== renderCount) return;
    clear(main).append(view);
  } catch (error) {
    if (mine === renderCount) clear(main).append(errorBox(error));
  }
}

window.addEventListener("hashchange", render);
window.addEventListener("shuhi:signed-out", () => { api.setToken(null); session = null; signIn(); });
setLanguage(initialLanguage());
start();
