/* cirbench site: the leaderboard. Every number was computed at build time (cirbench report's code) and is
   inline in the page; this script only filters, sorts, marks and draws. The view lives in the URL query, so
   a copied link opens the same view:
     space, protocol (a name or "all"), dataset, qf, metric, q (search), complete=1, published=0, eff=0|1,
     pinned=1, pin (up to 4 row ids), sort (DATASET/QF/METRIC or efficiency/KEY, best first), rev=1 (worst first).
   Metric, protocol and efficiency columns the URL does not set are chosen so the table fits the window:
   every metric, else the first; all protocols, else the first; efficiency columns, else none. */
(function () {
  "use strict";
  var D = CB.data();
  var el = CB.el;
  var M = D.metrics;
  var EFF = D.efficiency;
  var MAX_PINS = 4;
  var rowsById = {};
  D.rows.forEach(function (r, i) { r.index = i; rowsById[r.id] = r; });
  var colsById = {};
  D.columns.forEach(function (c) { colsById[c.id] = c; });
  var spaceNames = D.spaces.map(function (s) { return s.name; });
  var datasets = unique(D.columns.map(function (c) { return c.dataset; }));
  var qfs = unique(D.columns.map(function (c) { return String(c.qf); }))
    .sort(function (a, b) { return Number(a) - Number(b); });
  var hasPublished = D.rows.some(function (r) { return r.kind === "published"; });
  var open = {}; /* row ids whose provenance drawer is open (not part of the URL) */
  var level = 0; /* how far the view narrowed what the URL leaves open, to fit the window (see render) */
  var state = read();
  var ui = {};

  function unique(xs) {
    var out = [];
    xs.forEach(function (x) { if (out.indexOf(x) < 0) out.push(x); });
    return out;
  }

  /* ---------------------------------------------------------------- state <-> URL */

  function read() {
    var q = new URLSearchParams(location.search);
    var space = q.get("space");
    var protocol = q.get("protocol");
    var sort = q.get("sort") || "";
    return {
      space: spaceNames.indexOf(space) >= 0 ? space : D.default_space,
      protocol: protocol === "all" || D.protocols.indexOf(protocol) >= 0 ? protocol : null,
      dataset: CB.readList(q, "dataset"),
      qf: CB.readList(q, "qf"),
      metric: CB.readList(q, "metric"),
      q: q.get("q") || "",
      complete: q.get("complete") === "1",
      published: q.get("published") !== "0",
      eff: q.get("eff") === "0" ? false : q.get("eff") === "1" ? true : null,
      pinnedOnly: q.get("pinned") === "1",
      pin: (CB.readList(q, "pin") || []).filter(function (id) { return rowsById[id]; }).slice(0, MAX_PINS),
      sort: sort,
      rev: q.get("rev") === "1" && !!sort
    };
  }

  function write() {
    CB.writeQuery([
      ["space", state.space !== D.default_space ? state.space : null],
      ["protocol", state.protocol],
      ["dataset", state.dataset && state.dataset.join(",")],
      ["qf", state.qf && state.qf.join(",")],
      ["metric", state.metric && state.metric.join(",")],
      ["q", state.q],
      ["complete", state.complete ? "1" : null],
      ["published", state.published ? null : "0"],
      ["eff", state.eff === null ? null : state.eff ? "1" : "0"],
      ["pinned", state.pinnedOnly ? "1" : null],
      ["pin", state.pin.join(",")],
      ["sort", state.sort],
      ["rev", state.sort && state.rev ? "1" : null]
    ]);
  }

  function update(change) {
    Object.keys(change).forEach(function (k) { state[k] = change[k]; });
    write();
    CB.keepFocus(render);
  }

  /* ---------------------------------------------------------------- what the view shows */

  function cellsOf(rowId) {
    return (D.cells[state.space] || {})[rowId] || null;
  }

  /* The protocol shown ("all" for every one), the efficiency columns and the metrics: the URL's, or narrowed. */
  function protocol() {
    if (state.protocol !== null) return state.protocol;
    return level >= 2 && D.protocols.length > 1 ? D.protocols[0] : "all";
  }

  function showEff() {
    return state.eff !== null ? state.eff : level < 3;
  }

  function protocolOk(cell) {
    var p = protocol();
    if (p === "all" || !cell.p) return true; /* published numbers belong to no protocol of ours */
    return cell.p.indexOf(D.protocols.indexOf(p)) >= 0;
  }

  function cellAt(row, colId) {
    var cs = cellsOf(row.id);
    var c = cs && cs[colId];
    return c && protocolOk(c) ? c : null;
  }

  function visibleColumns() {
    return D.columns.filter(function (c) {
      if (state.dataset && state.dataset.indexOf(c.dataset) < 0) return false;
      if (state.qf && state.qf.indexOf(String(c.qf)) < 0) return false;
      /* a column exists where one of our runs has a number; published rows only sit beside those */
      return D.rows.some(function (r) { return r.kind !== "published" && cellAt(r, c.id); });
    });
  }

  function visibleMetrics(cols) {
    if (state.metric) return M.filter(function (m) { return state.metric.indexOf(m.name) >= 0; });
    return level >= 1 ? [M[0]] : M.slice();
  }

  function metricIndex(name) {
    for (var i = 0; i < M.length; i++) if (M[i].name === name) return i;
    return -1;
  }

  function value(row, colId, metric) {
    var c = cellAt(row, colId);
    return c ? CB.num(c.v[metricIndex(metric)]) : null;
  }

  function parseKey(key) {
    var cut = key.lastIndexOf("/");
    if (cut < 0) return null;
    var head = key.slice(0, cut), tail = key.slice(cut + 1);
    if (head === "efficiency") {
      var e = EFF.filter(function (x) { return x.key === tail; })[0];
      return e ? {eff: e} : null;
    }
    var m = M[metricIndex(tail)];
    return m && colsById[head] ? {col: head, metric: m} : null;
  }

  function sortValue(row, key) {
    if (key.eff) return row.efficiency ? CB.num(row.efficiency[key.eff.key]) : null;
    return value(row, key.col, key.metric.name);
  }

  function visibleRows(cols, metrics) {
    var needle = state.q.trim().toLowerCase();
    var rows = D.rows.filter(function (r) {
      if (!cellsOf(r.id)) return false;
      if (r.kind === "published" && !state.published) return false;
      return cols.some(function (c) { return cellAt(r, c.id); });
    });
    var pinned = state.pin.map(function (id) { return rowsById[id]; })
      .filter(function (r) { return rows.indexOf(r) >= 0; });
    var rest = rows.filter(function (r) {
      if (pinned.indexOf(r) >= 0 || state.pinnedOnly) return false;
      if (needle && r.label.toLowerCase().indexOf(needle) < 0) return false;
      if (state.complete) {
        return cols.every(function (c) {
          return metrics.every(function (m) { return value(r, c.id, m.name) !== null; });
        });
      }
      return true;
    });
    var key = state.sort ? parseKey(state.sort) : null;
    if (key) {
      var better = key.eff ? false : key.metric.higher_is_better;
      rest.sort(function (a, b) {
        var va = sortValue(a, key), vb = sortValue(b, key);
        if (va === null && vb === null) return a.index - b.index;
        if (va === null) return 1; /* missing numbers last, whichever the direction */
        if (vb === null) return -1;
        if (va === vb) return a.index - b.index;
        var d = va < vb ? -1 : 1;
        if (better) d = -d;
        return state.rev ? -d : d;
      });
    }
    return {pinned: pinned, rows: pinned.concat(rest), all: rows};
  }

  /* Best and second per column and metric, among our models (not the JPEG input, not published rows), by the
     number as printed; ties share a mark. Search, pins and "complete" do not change a rank. */
  function ranks(cols, metrics) {
    var out = {};
    cols.forEach(function (c) {
      metrics.forEach(function (m) {
        var vals = [];
        D.rows.forEach(function (r) {
          if (r.kind !== "ours") return;
          var v = value(r, c.id, m.name);
          if (v !== null && isFinite(v)) vals.push([r.id, Number(v.toFixed(m.decimals))]);
        });
        var distinct = unique(vals.map(function (x) { return x[1]; }))
          .sort(function (a, b) { return m.higher_is_better ? b - a : a - b; });
        vals.forEach(function (x) {
          if (x[1] === distinct[0]) out[x[0] + "|" + c.id + "|" + m.name] = "best";
          else if (distinct.length > 1 && x[1] === distinct[1]) out[x[0] + "|" + c.id + "|" + m.name] = "second";
        });
      });
    });
    return out;
  }

  /* ---------------------------------------------------------------- controls (built once) */

  function checkGroup(legend, name, options, labelOf) {
    var box = el("fieldset", {"data-testid": "filter-" + name}, [el("legend", {text: legend})]);
    var inputs = options.map(function (o) {
      var input = el("input", {type: "checkbox", value: o, name: name});
      input.addEventListener("change", function () {
        var on = inputs.filter(function (i) { return i.checked; }).map(function (i) { return i.value; });
        var change = {};
        change[name] = on;
        update(change);
      });
      box.appendChild(el("label", {}, [input, " " + (labelOf ? labelOf(o) : o)]));
      return input;
    });
    return {box: box, sync: function (list) {
      inputs.forEach(function (i) { i.checked = !list || list.indexOf(i.value) >= 0; });
    }};
  }

  function select(label, name, options, value, onChange) {
    var s = el("select", {name: name, "data-testid": "filter-" + name});
    options.forEach(function (o) { s.appendChild(el("option", {value: o[0], text: o[1]})); });
    s.value = value;
    s.addEventListener("change", function () { onChange(s.value); });
    return {box: el("label", {}, [label + " ", s]), input: s};
  }

  function toggle(label, name, onChange) {
    var input = el("input", {type: "checkbox", name: name, "data-testid": "filter-" + name});
    input.addEventListener("change", function () { onChange(input.checked); });
    return {box: el("label", {}, [input, " " + label]), input: input};
  }

  function buildControls(main) {
    var form = el("form", {class: "filters", "aria-label": "Filters", "data-testid": "filters"});
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    ui.space = select("Space", "space", D.spaces.map(function (s) { return [s.name, s.name]; }), state.space,
      function (v) { update({space: v}); });
    ui.protocol = select("Protocol", "protocol",
      [["all", "all"]].concat(D.protocols.map(function (p) { return [p, p]; })), protocol(),
      function (v) { update({protocol: v}); });
    ui.dataset = checkGroup("Datasets", "dataset", datasets);
    ui.qf = checkGroup("QF", "qf", qfs);
    ui.metric = checkGroup("Metrics", "metric", M.map(function (m) { return m.name; }), function (n) {
      return M[metricIndex(n)].label;
    });
    ui.search = el("input", {type: "search", name: "q", placeholder: "model name", "data-testid": "search",
      "aria-label": "Search model names"});
    ui.search.value = state.q;
    ui.search.addEventListener("input", function () { update({q: ui.search.value}); });
    ui.complete = toggle("Complete rows only", "complete", function (v) { update({complete: v}); });
    ui.published = toggle("Published rows", "published", function (v) { update({published: v}); });
    ui.eff = toggle("Efficiency columns", "eff", function (v) { update({eff: v}); });
    ui.pinnedOnly = toggle("Pinned rows only", "pinned", function (v) { update({pinnedOnly: v}); });
    var reset = el("button", {type: "button", "data-testid": "reset", text: "Reset view"});
    reset.addEventListener("click", function () {
      open = {};
      update({space: D.default_space, protocol: null, dataset: null, qf: null, metric: null, q: "", complete: false,
        published: true, eff: null, pinnedOnly: false, pin: [], sort: "", rev: false});
      ui.search.value = "";
    });
    var copy = el("button", {type: "button", "data-testid": "copy-link", text: "Copy link to this view"});
    copy.addEventListener("click", function () {
      var done = function () { message("Link copied: " + location.href); };
      var fail = function () { message("Copy this link: " + location.href); };
      if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(location.href).then(done, fail);
      else fail();
    });
    [ui.space.box, ui.protocol.box, ui.dataset.box, ui.qf.box, ui.metric.box,
      el("label", {}, ["Search ", ui.search]), ui.complete.box, hasPublished ? ui.published.box : null,
      ui.eff.box, ui.pinnedOnly.box, reset, copy].forEach(function (x) { if (x) form.appendChild(x); });
    main.appendChild(form);
    ui.pins = el("div", {class: "view-status", "data-testid": "pins"});
    ui.status = el("p", {class: "view-status", "data-testid": "status", "aria-live": "polite"});
    ui.msg = el("p", {class: "msg", role: "status", "aria-live": "polite"});
    ui.box = el("div", {class: "table-box"});
    ui.exports = el("div", {class: "exports", "data-testid": "exports"});
    ui.notes = el("div", {class: "notes"});
    [ui.pins, ui.status, ui.msg, ui.box, ui.exports, ui.notes].forEach(function (x) { main.appendChild(x); });
    main.appendChild(pagesList());
  }

  function message(text) {
    ui.msg.textContent = text;
  }

  function syncControls(metrics) {
    ui.space.input.value = state.space;
    ui.protocol.input.value = protocol();
    ui.dataset.sync(state.dataset);
    ui.qf.sync(state.qf);
    ui.metric.sync(metrics.map(function (m) { return m.name; }));
    ui.complete.input.checked = state.complete;
    ui.published.input.checked = state.published;
    ui.eff.input.checked = showEff();
    ui.pinnedOnly.input.checked = state.pinnedOnly;
    if (document.activeElement !== ui.search) ui.search.value = state.q;
  }

  /* ---------------------------------------------------------------- the table */

  function togglePin(id) {
    var pins = state.pin.slice();
    var at = pins.indexOf(id);
    if (at >= 0) pins.splice(at, 1);
    else if (pins.length >= MAX_PINS) {
      message("At most " + MAX_PINS + " pinned rows: unpin one first.");
      return;
    } else pins.push(id);
    message("");
    update({pin: pins});
  }

  function sortBy(key) {
    if (state.sort === key) update({rev: !state.rev});
    else update({sort: key, rev: false});
  }

  function header(cols, metrics) {
    var thead = el("thead");
    var r1 = el("tr"), r2 = el("tr"), r3 = el("tr");
    r1.appendChild(el("th", {class: "name", rowspan: 3, scope: "col", text: "Method"}));
    var groups = [];
    cols.forEach(function (c) {
      var last = groups[groups.length - 1];
      if (last && last.dataset === c.dataset) last.n += 1;
      else groups.push({dataset: c.dataset, n: 1});
    });
    groups.forEach(function (g) {
      r1.appendChild(el("th", {colspan: g.n * metrics.length, scope: "colgroup", text: g.dataset}));
    });
    cols.forEach(function (c) {
      var link = el("a", {href: c.page, class: "images-link", "data-testid": "images",
        title: "Every image of " + c.dataset + " " + c.label + ", with the compare slider",
        "aria-label": "Per-image results for " + c.dataset + " " + c.label, text: "images"});
      r2.appendChild(el("th", {colspan: metrics.length, scope: "colgroup"}, [c.label, link]));
      metrics.forEach(function (m) {
        var key = c.id + "/" + m.name;
        r3.appendChild(sortHeader(key, m.label, c.dataset + " " + c.label + " " + m.label +
          (m.unit ? " (" + m.unit + ")" : ""), m.higher_is_better, "sort"));
      });
    });
    if (showEff()) {
      r1.appendChild(el("th", {colspan: EFF.length, rowspan: 2, scope: "colgroup", text: "Efficiency"}));
      EFF.forEach(function (e) {
        var th = sortHeader("efficiency/" + e.key, e.label + (e.unit ? " (" + e.unit + ")" : ""), e.label,
          false, "sort-efficiency");
        th.className = "eff-head";
        r3.appendChild(th);
      });
    }
    [r1, r2, r3].forEach(function (r) { thead.appendChild(r); });
    return thead;
  }

  function sortHeader(key, text, long, higher, testid) {
    var th = el("th", {scope: "col"});
    var active = state.sort === key;
    var bestFirst = active && !state.rev;
    if (active) {
      /* best first is descending for higher-is-better metrics */
      th.setAttribute("aria-sort", (bestFirst === higher) ? "descending" : "ascending");
    }
    var b = el("button", {type: "button", class: "sort", "data-testid": testid, "data-key": key,
      "data-arrow": active ? (bestFirst ? " ▼best" : " ▲worst") : "",
      title: "Sort by " + long + " (" + (higher ? "higher" : "lower") + " is better); click again to reverse",
      "aria-label": "Sort by " + long + (active ? (bestFirst ? ", best first" : ", worst first") : "")}, [text]);
    b.addEventListener("click", function () { sortBy(key); });
    th.appendChild(b);
    return th;
  }

  function nameCell(r) {
    var pinned = state.pin.indexOf(r.id) >= 0;
    var pin = el("button", {type: "button", class: "icon", "data-testid": "pin", "aria-pressed": pinned ? "true" : "false",
      title: pinned ? "Unpin" : "Pin to compare (up to " + MAX_PINS + ")",
      "aria-label": (pinned ? "Unpin " : "Pin ") + r.label, text: pinned ? "★" : "☆"});
    pin.addEventListener("click", function () { togglePin(r.id); });
    var details = el("button", {type: "button", class: "icon", "data-testid": "details",
      "aria-expanded": open[r.id] ? "true" : "false", "aria-controls": "drawer-" + r.index,
      "aria-label": "Provenance of " + r.label, title: "Provenance", text: open[r.id] ? "▾" : "▸"});
    details.addEventListener("click", function () {
      if (open[r.id]) delete open[r.id];
      else open[r.id] = true;
      CB.keepFocus(render);
    });
    var tags = [];
    if (r.kind === "baseline") tags.push(el("span", {class: "tag", title: "The JPEG input itself: shown, never ranked",
      text: "input"}));
    if (r.kind === "published") tags.push(el("span", {class: "tag", "data-testid": "published-tag",
      title: "Quoted from [" + r.source + "], not re-run", text: "published [" + r.source + "]"}));
    if (pinned) tags.push(el("span", {class: "tag", text: "pinned"}));
    var label = r.kind === "published" ? r.model + (r.per_qf ? " (per-QF)" : "") : r.label;
    return el("th", {class: "name", scope: "row"}, [pin, " ", details, " ", el("span", {class: "label", text: label})]
      .concat(tags));
  }

  function scoreCell(r, c, m, marks) {
    var cell = cellAt(r, c.id);
    var v = cell ? cell.v[metricIndex(m.name)] : null;
    if (v === null || v === undefined) return el("td", {class: "missing", title: "no number", text: "–"});
    var mark = marks[r.id + "|" + c.id + "|" + m.name] || "";
    var partial = cell.n && c.images && cell.n < c.images;
    var title = m.label + " " + String(CB.num(v)) + (m.unit ? " " + m.unit : "");
    if (cell.n) title += " · " + cell.n + " of " + (c.images || cell.n) + " images";
    if (cell.space) title += " · published, space " + cell.space;
    if (mark) title += " · " + mark + " among our models";
    var text = el("span", {class: mark, text: CB.fmt(v, m.decimals)});
    var kids = [text];
    if (mark) kids.push(el("span", {class: "sr", text: mark === "best" ? " (best)" : " (second)"}));
    if (partial) kids.push(el("span", {class: "partial", title: cell.n + " of " + c.images + " images", text: "‡"}));
    return el("td", {"data-testid": "cell", "data-dataset": c.dataset, "data-qf": c.qf, "data-degradation": c.degradation,
      "data-metric": m.name, "data-value": String(CB.num(v)), title: title}, kids);
  }

  function effCells(r) {
    return EFF.map(function (e) {
      var v = r.efficiency ? r.efficiency[e.key] : null;
      if (v === null || v === undefined) return el("td", {class: "missing", text: "–"});
      return el("td", {"data-testid": "efficiency", "data-key": e.key, "data-value": String(CB.num(v)),
        text: CB.fmt(v, e.decimals)});
    });
  }

  function drawer(r, cols, metrics, width) {
    var grid = el("div", {class: "drawer-grid"});
    var dl = el("dl");
    function item(k, v) {
      if (v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length)) return;
      dl.appendChild(el("dt", {text: k}));
      dl.appendChild(el("dd", {text: Array.isArray(v) ? v.join("; ") : String(v)}));
    }
    if (r.kind === "published") {
      item("Source", "[" + r.source + "] " + D.sources[r.source - 1]);
      item("Metric space", r.spaces);
      item("Per-QF model", r.per_qf ? "yes: one model per QF" : "no");
      item("Note", "Quoted from the paper, not re-run by cirbench; placed only beside numbers of its own space.");
      grid.appendChild(dl);
    } else {
      var mi = r.model_info || {};
      item("Model", r.model);
      item("Description", mi.description);
      item("Setting", settingText(r.setting, mi.setting));
      item("Weights", mi.weights);
      item("Weights sha256", mi.weights_sha256);
      item("Model card", mi.card);
      (r.runs || []).forEach(function (run, i) {
        var n = r.runs.length > 1 ? " (" + (i + 1) + ")" : "";
        item("Run" + n, run.run);
        item("Protocol" + n, run.protocol + (run.protocol_sha256 ? ", sha256 " + run.protocol_sha256 : ""));
        item("Encoder" + n, run.encoder);
        item("libjpeg" + n, run.libjpeg);
        item("git commit" + n, run.git_commit);
        item("cirbench" + n, run.cirbench);
        item("Date" + n, run.date);
        item("Device" + n, run.device);
        item("Threads" + n, run.threads);
        item("Command" + n, run.command);
      });
      grid.appendChild(dl);
      grid.appendChild(ciTable(r, cols, metrics));
    }
    return el("tr", {class: "drawer", id: "drawer-" + r.index, "data-testid": "drawer"},
      [el("td", {colspan: width}, [grid])]);
  }

  function settingText(name, s) {
    if (!s) return name;
    var parts = [s.name || name];
    if (s.ensemble) parts.push("ensemble " + s.ensemble);
    if (s.tile) parts.push("tiles " + s.tile + (s.overlap ? "/" + s.overlap : ""));
    else if (s.auto_tile) parts.push("whole image (tiles of " + s.auto_tile + " only above " + s.auto_tile_pixels + " px)");
    if (s.precision) parts.push(s.precision);
    return parts.join(", ");
  }

  function ciTable(r, cols, metrics) {
    var t = el("table", {"data-testid": "ci"});
    var head = el("tr", {}, [el("th", {text: "Column"}), el("th", {text: "Images"})]);
    metrics.forEach(function (m) {
      head.appendChild(el("th", {text: "Δ " + m.label + " to " + D.reference + " [95 % CI]"}));
    });
    t.appendChild(el("thead", {}, [head]));
    var body = el("tbody");
    cols.forEach(function (c) {
      var cell = cellAt(r, c.id);
      if (!cell) return;
      var tr = el("tr", {}, [el("td", {text: c.dataset + " " + c.label}),
        el("td", {text: cell.n + " of " + (c.images || cell.n)})]);
      metrics.forEach(function (m) {
        var ci = cell.ci && cell.ci[m.name];
        tr.appendChild(el("td", {text: ci ? CB.signed(ci[0], m.decimals) + " [" + CB.signed(ci[1], m.decimals) + ", " +
          CB.signed(ci[2], m.decimals) + "]" + (ci[3] < 0.05 ? " †" : "") : "–",
          title: ci ? "paired bootstrap over " + ci[4] + " images; sign test p = " + ci[3].toPrecision(3) : ""}));
      });
      body.appendChild(tr);
    });
    t.appendChild(body);
    return el("div", {}, [t, el("p", {class: "hint",
      text: "† sign test p < 0.05. Intervals: percentile bootstrap of the mean per-image difference (2000 resamples, seeded)."})]);
  }

  /* What the URL leaves open narrows step by step until the table fits its box: one metric, one protocol, no
     efficiency columns. A view the user chose keeps its width (the box then scrolls, never the page). */
  function render() {
    /* drawers left closed while measuring: a drawer's text wraps to any width and must not narrow the view */
    for (level = 0; level <= 3; level++) {
      draw(false);
      if (ui.box.scrollWidth <= ui.box.clientWidth + 1) break;
    }
    level = Math.min(level, 3);
    if (Object.keys(open).length) draw(true);
  }

  function draw(drawers) {
    var cols = visibleColumns();
    var metrics = visibleMetrics(cols);
    syncControls(metrics);
    var shown = visibleRows(cols, metrics);
    var marks = ranks(cols, metrics);
    var width = 1 + cols.length * metrics.length + (showEff() ? EFF.length : 0);
    var table = el("table", {class: "board", "data-testid": "leaderboard"});
    table.appendChild(el("caption", {class: "sr", text: "Leaderboard, " + state.space + " space"}));
    table.appendChild(header(cols, metrics));
    var body = el("tbody");
    shown.rows.forEach(function (r) {
      var cls = [r.kind, state.pin.indexOf(r.id) >= 0 ? "pinned" : ""].join(" ").trim();
      var tr = el("tr", {"data-testid": "row", "data-model": r.model, "data-setting": r.setting, "data-row-id": r.id,
        "data-published": r.kind === "published" ? "true" : null, class: cls}, [nameCell(r)]);
      cols.forEach(function (c) {
        metrics.forEach(function (m) { tr.appendChild(scoreCell(r, c, m, marks)); });
      });
      if (showEff()) effCells(r).forEach(function (td) { tr.appendChild(td); });
      body.appendChild(tr);
      if (drawers && open[r.id]) body.appendChild(drawer(r, cols, metrics, width));
    });
    table.appendChild(body);
    ui.box.replaceChildren(cols.length ? table : el("p", {class: "note",
      text: "No column matches these filters: tick a dataset, QF and metric above, or reset the view."}));
    status(cols, metrics, shown);
    exports(cols, metrics, shown.rows);
    notes();
  }

  function status(cols, metrics, shown) {
    var text = shown.rows.length + " rows × " + cols.length * metrics.length + " numbers in " + state.space +
      " space, " + (protocol() === "all" ? "all protocols" : "protocol " + protocol()) + ".";
    var fit = [];
    if (!state.metric && metrics.length < M.length) fit.push(metrics[0].label + " only");
    if (state.protocol === null && protocol() !== "all") fit.push("protocol " + protocol() + " only");
    if (state.eff === null && !showEff()) fit.push("no efficiency columns");
    if (fit.length) text += " To fit the window: " + fit.join(", ") + "; choose more above.";
    if (state.sort) {
      var key = parseKey(state.sort);
      if (key) text += " Sorted by " + state.sort + (state.rev ? ", worst first." : ", best first.");
    }
    ui.status.textContent = text;
    ui.pins.replaceChildren();
    if (state.pin.length) {
      ui.pins.appendChild(document.createTextNode("Pinned (" + state.pin.length + " of " + MAX_PINS + "): "));
      state.pin.forEach(function (id) {
        var b = el("button", {type: "button", class: "icon", "aria-label": "Unpin " + rowsById[id].label,
          text: rowsById[id].label + " ×"});
        b.addEventListener("click", function () { togglePin(id); });
        ui.pins.appendChild(b);
        ui.pins.appendChild(document.createTextNode(" "));
      });
    }
  }

  function exports(cols, metrics, rows) {
    var files = D.exports[state.space] || {};
    ui.exports.replaceChildren(document.createTextNode("Download the " + state.space + " table (every column, as " +
      "cirbench report writes it):"));
    [["csv", "CSV"], ["json", "JSON"], ["latex", "LaTeX"]].forEach(function (f) {
      if (!files[f[0]]) return;
      ui.exports.appendChild(el("a", {href: files[f[0]], download: files[f[0]].split("/").pop(),
        "data-testid": "export-" + f[0], text: f[1]}));
    });
    var view = el("button", {type: "button", "data-testid": "export-view", text: "This view as CSV"});
    view.addEventListener("click", function () {
      var head = ["model", "setting", "published"];
      cols.forEach(function (c) {
        metrics.forEach(function (m) { head.push(c.id + "/" + m.name); });
      });
      if (showEff()) EFF.forEach(function (e) { head.push(e.key); });
      var lines = [head];
      rows.forEach(function (r) {
        var line = [r.model, r.setting, r.kind === "published" ? "yes" : ""];
        cols.forEach(function (c) {
          metrics.forEach(function (m) {
            var v = value(r, c.id, m.name);
            line.push(v === null ? "" : String(v));
          });
        });
        if (showEff()) EFF.forEach(function (e) {
          var v = r.efficiency ? CB.num(r.efficiency[e.key]) : null;
          line.push(v === null ? "" : String(v));
        });
        lines.push(line);
      });
      CB.download("cirbench-view-" + state.space + ".csv", CB.csv(lines), "text/csv");
    });
    ui.exports.appendChild(view);
  }

  function notes() {
    var s = D.spaces[spaceNames.indexOf(state.space)];
    var kids = [el("p", {text: "Means per dataset and JPEG QF on the " + s.text + " (" + s.name + "), from the runs' " +
      "records. Sort: click a metric (best first, by its direction); again for worst first. Best in bold, second " +
      "underlined (also announced to screen readers), among our models: the JPEG input (tag \"input\") and published " +
      "rows (tag \"published\", italic) are not ranked. ‡: the mean covers fewer images than the dataset has. " +
      "Efficiency: parameters, GFLOPs at 256×256, seconds per megapixel and peak memory, from the runs."})];
    if (D.sources.length && state.published) {
      var ol = el("ol");
      D.sources.forEach(function (src) { ol.appendChild(el("li", {text: src})); });
      kids.push(el("p", {text: "Published rows are quoted from their sources and placed only beside numbers of their own " +
        "metric space:"}), ol);
    }
    ((D.notes || {})[state.space] || []).forEach(function (n) { kids.push(el("p", {text: n})); });
    ui.notes.replaceChildren.apply(ui.notes, kids);
  }

  function pagesList() {
    var box = el("section", {"aria-labelledby": "pages-h"}, [el("h2", {id: "pages-h", text: "Per-image results"})]);
    var ul = el("ul", {class: "pages-list"});
    D.columns.forEach(function (c) {
      ul.appendChild(el("li", {}, [el("a", {href: c.page, "data-testid": "images", text: c.dataset + " " + c.label})]));
    });
    box.appendChild(ul);
    if (!D.saved_images) {
      box.appendChild(el("p", {class: "note", text: "These runs saved no images, so the per-image pages have numbers " +
        "but no compare slider: run cirbench run with --save-images into a new --out folder and build the site from it."}));
    }
    return box;
  }

  document.getElementById("top-actions").appendChild(CB.themeButton());
  var main = document.getElementById("main");
  buildControls(main);
  render();
})();
