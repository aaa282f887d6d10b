// Hand-drawn SVG charts: no library, readable with assistive technology through <title> and a table fallback.
import { t } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
export const DECISION_COLORS = {
  allow: "#3f8f6b", allow_marked: "#3b6ea8", redact: "#c7962c", consent_required: "#d9822b", block: "#c0392b",
};

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// A round top for a count axis with four integer steps: 4, 8, 20, 40, 100, 200, 400, 1000...
function niceMax(value) {
  const rough = Math.max(1, value / 4);
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  for (const step of [1, 2, 5, 10]) if (step * magnitude >= rough) return 4 * step * magnitude;
  return 40 * magnitude;
}

// Rough width of a label in px at 12px: CJK characters are about twice as wide as Latin ones.
function labelWidth(text) { let w = 0; for (const ch of text) w += ch.codePointAt(0) > 0x2e80 ? 12 : 6.6; return w; }

function fit(text, px) {
  if (labelWidth(text) <= px) return text;
  let out = "";
  for (const ch of text) { if (labelWidth(`${out}${ch}…`) > px) break; out += ch; }
  return `${out}…`;
}

// Decisions per day, stacked by kind.
export function stackedBars(days, kinds, { height = 220, label = "" } = {}) {
  const width = Math.max(560, days.length * 2 + 60);
  const left = 44, bottom = 28, top = 10, plotH = height - bottom - top, plotW = width - left - 10;
  const totals = days.map((d) => kinds.reduce((sum, k) => sum + (d[k] || 0), 0));
  const max = niceMax(Math.max(1, ...totals));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "chart" });
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    svg.append(s("line", { x1: left, x2: width - 10, y1: y, y2: y, class: "grid" }));
    svg.append(s("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, ((max * i) / 4).toLocaleString()));
  }
  const slot = plotW / days.length, bar = Math.max(1, Math.min(28, slot * 0.7));
  days.forEach((d, i) => {
    let y = top + plotH;
    const x = left + i * slot + (slot - bar) / 2;
    const g = s("g", {}, s("title", {}, `${d.date}: ${kinds.map((k) => `${t(`decision_${k}`)} ${d[k] || 0}`).join(", ")}`));
    for (const k of kinds) {
      const value = d[k] || 0;
      if (!value) continue;
      const h = (plotH * value) / max;
      y -= h;
      g.append(s("rect", { x, y, width: bar, height: Math.max(h, 0.5), fill: DECISION_COLORS[k], rx: 2 }));
    }
    svg.append(g);
    const every = Math.ceil(days.length / 10);
    if (i % every === 0 || i === days.length - 1) {
      svg.append(s("text", { x: x + bar / 2, y: height - 8, "text-anchor": "middle", class: "axis" }, d.date.slice(5)));
    }
  });
  return svg;
}

export function legend(kinds) {
  const ul = document.createElement("ul");
  ul.className = "legend";
  for (const k of kinds) {
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.dataset.kind = k;
    li.append(sw, t(`decision_${k}`));
    ul.append(li);
  }
  return ul;
}

// Horizontal bars: [{label, value}].
export function hBars(rows, { label = "" } = {}) {
  const rowH = 30, width = 560, left = 270, height = Math.max(rowH, rows.length * rowH) + 6;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "chart" });
  rows.forEach((r, i) => {
    const y = 4 + i * rowH, w = ((width - left - 60) * r.value) / max;
    const name = fit(r.label, left - 14);
    svg.append(s("text", { x: left - 8, y: y + 17, "text-anchor": "end", class: "bar-label" }, name, s("title", {}, r.label)));
    svg.append(s("rect", { x: left, y: y + 4, width: Math.max(w, 2), height: rowH - 10, rx: 3, class: "bar" }));
    svg.append(s("text", { x: left + w + 6, y: y + 17, class: "bar-value" }, r.value.toLocaleString()));
  });
  return svg;
}

function addYears(iso, years) {
  const d = new Date(`${iso.slice(0, 10)}T00:00:00Z`);
  d.setUTCFullYear(d.getUTCFullYear() + years);
  return d;
}

// The agreement's life: term (until its end or termination), then survival, with today marked.
export function agreementPhases(a) {
  const start = new Date(`${a.effective_date}T00:00:00Z`);
  let termEnd = addYears(a.effective_date, a.term_years);
  if (a.terminated_at && new Date(a.terminated_at) < termEnd) termEnd = new Date(a.terminated_at);
  const survivalEnd = new Date(termEnd);
  survivalEnd.setUTCFullYear(survivalEnd.getUTCFullYear() + a.survival_years);
  return { start, termEnd, survivalEnd };
}

export function timeline(a, { width = 640 } = {}) {
  const { start, termEnd, survivalEnd } = agreementPhases(a);
  const now = new Date();
  const lo = Math.min(start.getTime(), now.getTime()), hi = Math.max(survivalEnd.getTime(), now.getTime(), lo + 864e5);
  const pad = 16, plotW = width - pad * 2;
  const x = (d) => pad + (plotW * (d.getTime() - lo)) / (hi - lo);
  const iso = (d) => d.toISOString().slice(0, 10);
  const svg = s("svg", { viewBox: `0 0 ${width} 78`, role: "img", class: "chart timeline",
    "aria-label": `${t("agr_term")} ${iso(start)} – ${iso(termEnd)}, ${t("agr_survival")} – ${iso(survivalEnd)}` });
  svg.append(s("rect", { x: x(start), y: 18, width: Math.max(2, x(termEnd) - x(start)), height: 18, rx: 4, class: "phase-term" },
    s("title", {}, `${t("agr_term")}: ${iso(start)} – ${iso(termEnd)}`)));
  svg.append(s("rect", { x: x(termEnd), y: 18, width: Math.max(2, x(survivalEnd) - x(termEnd)), height: 18, rx: 4, class: "phase-survival" },
    s("title", {}, `${t("agr_survival")}: ${iso(termEnd)} – ${iso(survivalEnd)}`)));
  let labelled = -Infinity;
  for (const [d, anchor] of [[start, "start"], [termEnd, "middle"], [survivalEnd, "end"]]) {
    svg.append(s("line", { x1: x(d), x2: x(d), y1: 14, y2: 40, class: "tick" }));
    const right = anchor === "end" ? x(d) : anchor === "middle" ? x(d) + 34 : x(d) + 68;
    if (right - 68 < labelled + 6) continue;  // too close to the previous date: its tick and <title> remain
    svg.append(s("text", { x: x(d), y: 54, "text-anchor": anchor, class: "axis" }, iso(d)));
    labelled = right;
  }
  svg.append(s("line", { x1: x(now), x2: x(now), y1: 8, y2: 44, class: "today" }));
  svg.append(s("text", { x: x(now), y: 72, "text-anchor": x(now) > width - 60 ? "end" : x(now) < 60 ? "start" : "middle", class: "today-label" }, t("agr_today")));
  return svg;
}
