/* cirbench site: helpers shared by the leaderboard and the per-image pages. No network, no libraries: the
   data are inline in each page (script#site-data), so the site works from file:// and any static host. */
(function () {
  "use strict";

  function data() {
    return JSON.parse(document.getElementById("site-data").textContent);
  }

  /* A number from the data: JSON has no infinities, so they travel as strings. */
  function num(v) {
    if (v === null || v === undefined) return null;
    if (v === "inf") return Infinity;
    if (v === "-inf") return -Infinity;
    return v;
  }

  function fmt(v, decimals) {
    v = num(v);
    if (v === null) return "–";
    if (v === Infinity) return "∞";
    if (v === -Infinity) return "−∞";
    return v.toFixed(decimals);
  }

  function signed(v, decimals) {
    v = num(v);
    if (v === null || !isFinite(v)) return fmt(v, decimals);
    var t = Math.abs(v).toFixed(decimals);
    if (Number(t) === 0) return "±" + t;
    return (v > 0 ? "+" : "−") + t;
  }

  /* Element builder: el("td", {class: "x", "data-key": k}, [children or text]). */
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") e.textContent = v;
        else if (k === "on") Object.keys(v).forEach(function (ev) { e.addEventListener(ev, v[ev]); });
        else e.setAttribute(k, v === true ? "" : String(v));
      });
    }
    (kids || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return e;
  }

  /* Query values: lists are comma-separated (or repeated); "/", ",", ":" and "@" stay readable. */
  function readList(params, key) {
    var all = params.getAll(key);
    if (!all.length) return null;
    var out = [];
    all.forEach(function (v) {
      v.split(",").forEach(function (x) {
        x = x.trim();
        if (x && out.indexOf(x) < 0) out.push(x);
      });
    });
    return out;
  }

  function enc(v) {
    return encodeURIComponent(v).replace(/%2F/g, "/").replace(/%2C/g, ",").replace(/%3A/g, ":").replace(/%40/g, "@");
  }

  function writeQuery(pairs) {
    var q = pairs.filter(function (p) { return p[1] !== null && p[1] !== undefined && p[1] !== ""; })
      .map(function (p) { return enc(p[0]) + "=" + enc(p[1]); }).join("&");
    var url = location.pathname + (q ? "?" + q : "") + location.hash;
    try {
      history.replaceState(null, "", url);
    } catch (e) {
      /* a browser that refuses history on file:// keeps the view, just not in the address bar */
    }
  }

  function download(name, text, type) {
    var blob = new Blob([text], {type: type || "text/plain"});
    var a = el("a", {href: URL.createObjectURL(blob), download: name});
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function csvField(v) {
    var s = v === null || v === undefined ? "" : String(v);
    return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }

  function csv(rows) {
    return rows.map(function (r) { return r.map(csvField).join(","); }).join("\n") + "\n";
  }

  /* Theme: auto (the system's), light or dark; remembered where the browser allows storage. */
  var THEMES = ["auto", "light", "dark"];
  function applyTheme(t) {
    if (t === "auto") document.documentElement.removeAttribute("data-theme");
    else document.documentElement.setAttribute("data-theme", t);
  }
  function storedTheme() {
    try { return localStorage.getItem("cirbench-theme") || "auto"; } catch (e) { return "auto"; }
  }
  var theme = storedTheme();
  applyTheme(theme);

  function themeButton() {
    var b = el("button", {type: "button", "data-testid": "theme"});
    function label() {
      b.textContent = "Theme: " + theme;
      b.setAttribute("aria-label", "Colour theme: " + theme + " (click to change)");
    }
    b.addEventListener("click", function () {
      theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
      try { localStorage.setItem("cirbench-theme", theme); } catch (e) { /* storage refused: this page only */ }
      applyTheme(theme);
      label();
    });
    label();
    return b;
  }

  /* Redraws replace elements: run fn, then give the focus back to the element that plays the same part
     (same data-testid and data-key, in the same row), so keyboard users keep their place. */
  function rowOf(e) {
    var row = e.closest("[data-row-id], [data-image]");
    return row ? (row.getAttribute("data-row-id") || row.getAttribute("data-image") + "|" + row.getAttribute("data-model")) : "";
  }

  function keepFocus(fn) {
    var a = document.activeElement;
    var testid = a && a !== document.body ? a.getAttribute("data-testid") : null;
    var key = testid ? a.getAttribute("data-key") : null, row = testid ? rowOf(a) : "";
    fn();
    if (!testid || document.activeElement !== document.body) return;
    var found = [].slice.call(document.querySelectorAll("[data-testid=\"" + testid + "\"]")).filter(function (e) {
      return e.getAttribute("data-key") === key && rowOf(e) === row;
    })[0];
    if (found) found.focus();
  }

  window.CB = {data: data, num: num, fmt: fmt, signed: signed, el: el, readList: readList, writeQuery: writeQuery,
    download: download, csv: csv, themeButton: themeButton, keepFocus: keepFocus};
})();
