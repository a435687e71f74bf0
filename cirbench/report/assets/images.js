/* cirbench site: a per-image page (one dataset x degradation x QF). Every image's numbers for every model with
   their difference to the JPEG input and to a chosen model, sortable; the worst images of a model one click
   away; a compare widget over the crops made at build time (split slider, synchronised zoom and pan, full
   screen). The view lives in the URL query: space, model, metric (of the differences), ref, sort, rev, k,
   image, a, b. */
(function () {
  "use strict";
  var D = CB.data();
  var el = CB.el;
  var M = D.metrics;
  var rowsById = {};
  D.rows.forEach(function (r, i) { r.index = i; rowsById[r.id] = r; });
  var spaceNames = D.spaces.map(function (s) { return s.name; });
  var ours = D.rows.filter(function (r) { return r.kind === "ours"; });
  var imageIndex = {};
  D.images.forEach(function (im, i) { imageIndex[im.name] = i; });
  var state = read();
  var ui = {};
  var view = {z: 1, tx: 0, ty: 0, split: 50, w: 0, h: 0};

  /* ---------------------------------------------------------------- state <-> URL */

  function defaultRef() {
    return ours.length ? ours[0].id : (D.rows[0] ? D.rows[0].id : "");
  }

  function read() {
    var q = new URLSearchParams(location.search);
    var space = q.get("space"), model = q.get("model") || "", ref = q.get("ref") || "", image = q.get("image") || "";
    var k = parseInt(q.get("k") || "0", 10);
    var metric = q.get("metric") || "";
    return {
      space: spaceNames.indexOf(space) >= 0 ? space : D.default_space,
      model: rowsById[model] ? model : "",
      metric: M.some(function (m) { return m.name === metric; }) ? metric : M[0].name,
      ref: rowsById[ref] ? ref : defaultRef(),
      sort: q.get("sort") || "",
      rev: q.get("rev") === "1",
      k: k > 0 ? k : 0,
      image: imageIndex[image] !== undefined ? image : (D.images[0] ? D.images[0].name : ""),
      a: q.get("a") || "",
      b: q.get("b") || ""
    };
  }

  function write() {
    CB.writeQuery([
      ["space", state.space !== D.default_space ? state.space : null],
      ["model", state.model],
      ["metric", state.metric !== M[0].name ? state.metric : null],
      ["ref", state.ref !== defaultRef() ? state.ref : null],
      ["sort", state.sort],
      ["rev", state.sort && state.rev ? "1" : null],
      ["k", state.k ? String(state.k) : null],
      ["image", D.images.length && state.image !== D.images[0].name ? state.image : null],
      ["a", state.a],
      ["b", state.b]
    ]);
  }

  function update(change, keepCompare) {
    Object.keys(change).forEach(function (key) { state[key] = change[key]; });
    write();
    CB.keepFocus(function () {
      renderTable();
      if (!keepCompare) renderCompare();
    });
  }

  /* ---------------------------------------------------------------- numbers */

  function values(rowId, i) {
    var per = (D.values[state.space] || {})[rowId];
    return per ? per[i] : null;
  }

  function metricValue(rowId, i, m) {
    var v = values(rowId, i);
    return v ? CB.num(v[m]) : null;
  }

  function delta(rowId, otherId, i, m) {
    if (!otherId) return null;
    var a = metricValue(rowId, i, m), b = metricValue(otherId, i, m);
    return a === null || b === null || !isFinite(a) || !isFinite(b) ? null : a - b;
  }

  /* Table rows: one per image and model, as [image index, row]. */
  function lines() {
    var out = [];
    D.images.forEach(function (im, i) {
      D.rows.forEach(function (r) {
        if (state.model && r.id !== state.model) return;
        if (values(r.id, i)) out.push({i: i, r: r});
      });
    });
    var key = parseKey(state.sort);
    if (key) {
      out.sort(function (x, y) {
        var a = key.get(x), b = key.get(y);
        if (a === null && b === null) return 0;
        if (a === null) return 1;
        if (b === null) return -1;
        var d = key.text ? String(a).localeCompare(String(b), undefined, {numeric: true}) : (a < b ? -1 : a > b ? 1 : 0);
        if (!key.text && key.higher) d = -d; /* best first */
        return state.rev ? -d : d;
      });
    }
    return state.k ? out.slice(0, state.k) : out;
  }

  function parseKey(sort) {
    if (!sort) return null;
    if (sort === "image") return {text: true, get: function (x) { return D.images[x.i].name; }};
    if (sort === "model") return {text: true, get: function (x) { return x.r.label; }};
    var parts = sort.split(":");
    var m = -1;
    M.forEach(function (spec, j) { if (spec.name === parts[1]) m = j; });
    if (m < 0) return null;
    var higher = M[m].higher_is_better;
    if (parts[0] === "m") return {higher: higher, get: function (x) { return metricValue(x.r.id, x.i, m); }};
    if (parts[0] === "dj") return {higher: higher, get: function (x) { return delta(x.r.id, D.baseline, x.i, m); }};
    if (parts[0] === "dr") return {higher: higher, get: function (x) { return delta(x.r.id, state.ref, x.i, m); }};
    return null;
  }

  /* ---------------------------------------------------------------- controls */

  function metricIndex(name) {
    for (var j = 0; j < M.length; j++) if (M[j].name === name) return j;
    return 0;
  }

  function labelOf(id) {
    if (id === "gt") return "Ground truth";
    var r = rowsById[id];
    if (!r) return id;
    return r.kind === "baseline" ? "JPEG input (" + r.label + ")" : r.label;
  }

  function buildControls(main) {
    var nav = el("nav", {class: "siblings", "aria-label": "Pages"}, [
      el("a", {href: D.root, text: "← Leaderboard", "data-testid": "back"}),
      el("span", {text: D.dataset + ":"})]);
    D.siblings.forEach(function (s) {
      nav.appendChild(el("a", {href: s.href, "aria-current": s.current ? "page" : null, text: s.label}));
    });
    main.appendChild(nav);
    var form = el("form", {class: "filters", "aria-label": "Filters"});
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    ui.space = el("select", {name: "space", "data-testid": "filter-space"});
    D.spaces.forEach(function (s) { ui.space.appendChild(el("option", {value: s.name, text: s.name})); });
    ui.space.addEventListener("change", function () { update({space: ui.space.value}); });
    ui.model = el("select", {name: "model", "data-testid": "filter-model"});
    ui.model.appendChild(el("option", {value: "", text: "all"}));
    D.rows.forEach(function (r) { ui.model.appendChild(el("option", {value: r.id, text: r.label})); });
    ui.model.addEventListener("change", function () { update({model: ui.model.value}, true); });
    ui.ref = el("select", {name: "ref", "data-testid": "filter-ref"});
    D.rows.forEach(function (r) { ui.ref.appendChild(el("option", {value: r.id, text: r.label})); });
    ui.ref.addEventListener("change", function () { update({ref: ui.ref.value}, true); });
    ui.metric = el("select", {name: "metric", "data-testid": "filter-metric"});
    M.forEach(function (m) { ui.metric.appendChild(el("option", {value: m.name, text: m.label})); });
    ui.metric.addEventListener("change", function () { update({metric: ui.metric.value}); });
    ui.k = el("select", {name: "k", "data-testid": "filter-k"});
    [[0, "all"], [5, "5"], [10, "10"], [20, "20"]].forEach(function (o) {
      ui.k.appendChild(el("option", {value: o[0], text: o[1]}));
    });
    ui.k.addEventListener("change", function () { update({k: parseInt(ui.k.value, 10)}, true); });
    [el("label", {}, ["Space ", ui.space]), el("label", {}, ["Model ", ui.model]),
      el("label", {}, ["Differences in ", ui.metric]), el("label", {}, ["to JPEG and to ", ui.ref]), el("label", {}, ["Show ", ui.k, " lines"])].forEach(function (x) {
      form.appendChild(x);
    });
    var worst = el("fieldset", {"data-testid": "worst"}, [el("legend", {text: "Worst 5 images for"})]);
    (ours.length ? ours : D.rows).forEach(function (r) {
      var b = el("button", {type: "button", "data-testid": "worst-k", "data-model": r.id, text: r.label,
        title: "The 5 images where " + r.label + " gains least over " + (D.baseline || "the others") +
          " in the chosen metric"});
      b.addEventListener("click", function () { worstK(r.id, 5); });
      worst.appendChild(b);
    });
    form.appendChild(worst);
    main.appendChild(form);
    ui.status = el("p", {class: "view-status", "aria-live": "polite", "data-testid": "status"});
    main.appendChild(ui.status);
    var layout = el("div", {class: "image-layout"});
    ui.box = el("div", {class: "table-box"});
    ui.compare = el("section", {class: "compare", "data-testid": "compare", "aria-label": "Compare images"});
    layout.appendChild(ui.box);
    layout.appendChild(ui.compare);
    main.appendChild(layout);
    var ex = el("div", {class: "exports", "data-testid": "exports"}, [document.createTextNode(
      "Download every image's numbers (all spaces, full precision):")]);
    [["csv", "CSV"], ["json", "JSON"], ["latex", "LaTeX"]].forEach(function (f) {
      ex.appendChild(el("a", {href: D.exports[f[0]], download: D.exports[f[0]].split("/").pop(),
        "data-testid": "export-" + f[0], text: f[1]}));
    });
    main.appendChild(ex);
    main.appendChild(el("p", {class: "note", text: "Δ JPEG: the model's number minus the JPEG input's on the same " +
      "image; Δ to: minus the chosen model's. Signs are written out (+, −); positive is better for every metric " +
      "here whose higher is better. The compare widget shows the same window of every image (the most textured " +
      "square of the ground truth, cropped at build time) as lossless PNG."}));
  }

  function worstK(id, k) {
    var m = M[metricIndex(state.metric)];
    /* worst first: the smallest gain over the JPEG input (or the lowest score without one) */
    var sort = (D.baseline && id !== D.baseline ? "dj:" : "m:") + m.name;
    state.model = id;
    state.sort = sort;
    state.rev = true;
    state.k = k;
    var first = lines()[0];
    update({image: first ? D.images[first.i].name : state.image, b: id});
  }

  /* ---------------------------------------------------------------- the table */

  function sortButton(key, text, long) {
    var active = state.sort === key;
    var th = el("th", {scope: "col", "aria-sort": active ? (state.rev ? "ascending" : "descending") : null});
    var b = el("button", {type: "button", class: "sort", "data-testid": "image-sort", "data-key": key,
      "data-arrow": active ? (state.rev ? " ▲" : " ▼") : "", title: "Sort by " + long + "; click again to reverse",
      "aria-label": "Sort by " + long}, [text]);
    b.addEventListener("click", function () {
      if (state.sort === key) update({rev: !state.rev}, true);
      else update({sort: key, rev: false}, true);
    });
    th.appendChild(b);
    return th;
  }

  function renderTable() {
    ui.space.value = state.space;
    ui.model.value = state.model;
    ui.ref.value = state.ref;
    ui.metric.value = state.metric;
    ui.k.value = String(state.k);
    var table = el("table", {class: "board", "data-testid": "image-table"});
    table.appendChild(el("caption", {class: "sr", text: "Every image, every model"}));
    var r1 = el("tr"), r2 = el("tr");
    r1.appendChild(el("th", {class: "name", rowspan: 2, scope: "col"}, [sortButton("image", "Image", "image name")]));
    r1.appendChild(el("th", {rowspan: 2, scope: "col"}, [sortButton("model", "Model", "model")]));
    var dm = M[metricIndex(state.metric)];
    var groups = [["m", "Score", M]];
    if (D.baseline) groups.push(["dj", "Δ to JPEG", [dm]]);
    groups.push(["dr", "Δ to " + (rowsById[state.ref] ? rowsById[state.ref].label : ""), [dm]]);
    groups.forEach(function (g) {
      if (g[0] === "m") r1.appendChild(el("th", {colspan: M.length, scope: "colgroup", text: g[1]}));
      else r1.appendChild(el("th", {rowspan: 1, scope: "col", class: "delta-head", text: g[1]}));
      g[2].forEach(function (m) {
        r2.appendChild(sortButton(g[0] + ":" + m.name, g[0] === "m" ? m.label : "Δ " + m.label, g[1] + " " + m.label));
      });
    });
    table.appendChild(el("thead", {}, [r1, r2]));
    var body = el("tbody");
    var shown = lines();
    shown.forEach(function (x) {
      var im = D.images[x.i];
      var pick = el("button", {type: "button", class: "sort", "data-testid": "pick-image",
        "aria-label": "Compare " + im.name, title: "Show in the compare widget"}, [
        im.thumb ? el("img", {src: im.thumb, alt: "", width: null}) : null, im.name]);
      pick.addEventListener("click", function () {
        update({image: im.name, b: x.r.kind === "ours" ? x.r.id : state.b});
      });
      var tr = el("tr", {"data-testid": "image-row", "data-image": im.name, "data-model": x.r.id,
        class: im.name === state.image ? "selected" : null, "aria-current": im.name === state.image ? "true" : null},
        [el("td", {class: "name img-name"}, [pick]),
        el("td", {style: null, class: "model", text: x.r.label})]);
      groups.forEach(function (g) {
        g[2].forEach(function (m) {
          var j = metricIndex(m.name);
          var v = g[0] === "m" ? metricValue(x.r.id, x.i, j)
            : g[0] === "dj" ? delta(x.r.id, D.baseline, x.i, j) : delta(x.r.id, state.ref, x.i, j);
          if (v === null) {
            tr.appendChild(el("td", {class: "missing", text: "–"}));
            return;
          }
          var better = m.higher_is_better ? v > 0 : v < 0;
          var cls = g[0] === "m" || Math.abs(v) < Math.pow(10, -m.decimals) / 2 ? "" : better ? "delta-pos" : "delta-neg";
          tr.appendChild(el("td", {"data-testid": "image-cell", "data-kind": g[0], "data-metric": m.name,
            "data-value": String(v), class: cls || null,
            text: g[0] === "m" ? CB.fmt(v, m.decimals) : CB.signed(v, m.decimals)}));
        });
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    ui.box.replaceChildren(table);
    var text = shown.length + " lines (" + D.images.length + " images) in " + state.space + " space";
    if (state.model) text += ", model " + rowsById[state.model].label;
    if (state.sort) text += ", sorted by " + state.sort + (state.rev ? " (worst first)" : " (best first)");
    ui.status.textContent = text + ".";
  }

  /* ---------------------------------------------------------------- compare widget */

  function versionsOf(im) {
    var ids = [];
    if (im.versions.gt) ids.push("gt");
    D.rows.forEach(function (r) { if (im.versions[r.id]) ids.push(r.id); });
    return ids;
  }

  function sideText(id, i) {
    var j = metricIndex(state.metric), m = M[j];
    var v = id === "gt" ? null : metricValue(id, i, j);
    return labelOf(id) + (v !== null ? " · " + CB.fmt(v, m.decimals) + (m.unit ? " " + m.unit : "") : "");
  }

  function renderCompare() {
    var box = ui.compare;
    box.replaceChildren(el("h2", {text: "Compare"}));
    var i = imageIndex[state.image];
    var im = D.images[i];
    if (!D.saved) {
      box.appendChild(el("p", {class: "note", "data-testid": "no-images"}, [
        "The runs behind this page saved no images, so there is nothing to compare. Images are written only while ",
        el("code", {text: "cirbench run"}), " computes: run it again with ", el("code", {text: "--save-images"}),
        " into a new folder, e.g. ",
        el("code", {text: "cirbench run --models MODELS --datasets " + D.dataset + " --qf " + D.qf +
          " --save-images --out runs/with-images"}),
        ", then build the site from that folder."]));
      return;
    }
    var ids = im ? versionsOf(im) : [];
    if (ids.length < 2) {
      box.appendChild(el("p", {class: "note", text: "No saved images of " + (im ? im.name : "this image") +
        " (the runs saved images of other datasets or QFs): rerun with --save-images to compare it."}));
      return;
    }
    var a = ids.indexOf(state.a) >= 0 ? state.a : (D.baseline && ids.indexOf(D.baseline) >= 0 ? D.baseline : ids[0]);
    var b = ids.indexOf(state.b) >= 0 ? state.b : (ids.filter(function (x) {
      return x !== a && x !== "gt" && x !== D.baseline;
    })[0] || ids.filter(function (x) { return x !== a; })[0]);
    view.w = im.window[3];
    view.h = im.window[2];

    var pickImage = el("select", {"data-testid": "compare-image", "aria-label": "Image"});
    D.images.forEach(function (x) { pickImage.appendChild(el("option", {value: x.name, text: x.name})); });
    pickImage.value = im.name;
    pickImage.addEventListener("change", function () { update({image: pickImage.value}); });
    function sideSelect(which, current) {
      var s = el("select", {"data-testid": "compare-" + which, "aria-label": "Side " + which.toUpperCase()});
      ids.forEach(function (id) { s.appendChild(el("option", {value: id, text: labelOf(id)})); });
      s.value = current;
      s.addEventListener("change", function () {
        var change = {};
        change[which] = s.value;
        update(change);
      });
      return s;
    }
    var zoomOut = el("button", {type: "button", text: "−", "aria-label": "Zoom out", "data-testid": "zoom-out"});
    var zoomIn = el("button", {type: "button", text: "+", "aria-label": "Zoom in", "data-testid": "zoom-in"});
    var fit = el("button", {type: "button", text: "Fit", "aria-label": "Fit the image", "data-testid": "zoom-fit"});
    var full = el("button", {type: "button", text: "Full screen", "data-testid": "fullscreen"});
    box.appendChild(el("div", {class: "compare-bar"}, [
      el("label", {}, ["Image ", pickImage]), el("label", {}, ["Left ", sideSelect("a", a)]),
      el("label", {}, ["Right ", sideSelect("b", b)]), zoomOut, zoomIn, fit, full]));

    var imgA = el("img", {src: im.versions[a], alt: labelOf(a) + ", " + im.name, "data-testid": "compare-img-a",
      draggable: "false"});
    var imgB = el("img", {src: im.versions[b], alt: labelOf(b) + ", " + im.name, "data-testid": "compare-img-b",
      draggable: "false"});
    var layerA = el("div", {class: "layer a"}, [imgA]);
    var layerB = el("div", {class: "layer b"}, [imgB]);
    var divider = el("div", {class: "divider", "aria-hidden": "true"});
    var vp = el("div", {class: "viewport", tabindex: "0", role: "group", "data-testid": "viewport",
      "aria-label": "Left " + labelOf(a) + ", right " + labelOf(b) + ". Keys: + and − zoom, arrows pan, " +
        "[ and ] move the split, 0 fits, f full screen"},
      [layerA, layerB, divider, el("span", {class: "side a", text: "◧ " + sideText(a, i)}),
        el("span", {class: "side b", text: sideText(b, i) + " ◨"})]);
    var split = el("input", {type: "range", min: "0", max: "100", step: "1", value: String(view.split),
      "aria-label": "Split position (percent of the width shown from the left image)", "data-testid": "split"});
    box.appendChild(vp);
    box.appendChild(split);
    box.appendChild(el("p", {class: "hint", text: "Drag the image to pan, the ⇔ handle or the slider to move the split; " +
      "wheel or + / − to zoom. Window (y, x, h, w) = (" + im.window.join(", ") + ") of the " + im.name + " image."}));

    function size() {
      var vw = vp.clientWidth;
      var fsEl = document.fullscreenElement === box;
      if (!fsEl) vp.style.height = Math.min(Math.round(vw * view.h / view.w), Math.round(window.innerHeight * 0.7)) + "px";
      return {w: vw, h: vp.clientHeight};
    }
    function fitScale(s) {
      return Math.min(s.w / view.w, s.h / view.h);
    }
    function clamp(s) {
      var scale = fitScale(s) * view.z;
      var iw = view.w * scale, ih = view.h * scale;
      view.tx = iw <= s.w ? (s.w - iw) / 2 : Math.min(0, Math.max(s.w - iw, view.tx));
      view.ty = ih <= s.h ? (s.h - ih) / 2 : Math.min(0, Math.max(s.h - ih, view.ty));
      return scale;
    }
    function apply() {
      var s = size();
      var scale = clamp(s);
      var t = "translate(" + view.tx + "px," + view.ty + "px) scale(" + scale + ")";
      imgA.style.transform = t; /* the same transform on both layers: zoom and pan stay synchronised */
      imgB.style.transform = t;
      layerB.style.clipPath = "inset(0 0 0 " + view.split + "%)";
      divider.style.left = view.split + "%";
      split.value = String(view.split);
    }
    function zoomAt(factor, cx, cy) {
      var s = size();
      var before = fitScale(s) * view.z;
      view.z = Math.min(32, Math.max(1, view.z * factor));
      var after = fitScale(s) * view.z;
      view.tx = cx - (cx - view.tx) * after / before;
      view.ty = cy - (cy - view.ty) * after / before;
      apply();
    }
    function center(factor) {
      var s = size();
      zoomAt(factor, s.w / 2, s.h / 2);
    }
    zoomIn.addEventListener("click", function () { center(1.5); });
    zoomOut.addEventListener("click", function () { center(1 / 1.5); });
    fit.addEventListener("click", function () { view.z = 1; apply(); });
    full.addEventListener("click", function () {
      if (document.fullscreenElement) document.exitFullscreen();
      else if (box.requestFullscreen) box.requestFullscreen().catch(function () { /* refused: stay in the page */ });
    });
    split.addEventListener("input", function () { view.split = Number(split.value); apply(); });
    vp.addEventListener("wheel", function (e) {
      e.preventDefault();
      var r = vp.getBoundingClientRect();
      zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
    }, {passive: false});
    var drag = null;
    vp.addEventListener("pointerdown", function (e) {
      var r = vp.getBoundingClientRect();
      drag = {split: e.target === divider, x: e.clientX, y: e.clientY, tx: view.tx, ty: view.ty, left: r.left, width: r.width};
      vp.setPointerCapture(e.pointerId);
    });
    vp.addEventListener("pointermove", function (e) {
      if (!drag) return;
      if (drag.split) view.split = Math.max(0, Math.min(100, (e.clientX - drag.left) / drag.width * 100));
      else {
        view.tx = drag.tx + e.clientX - drag.x;
        view.ty = drag.ty + e.clientY - drag.y;
      }
      apply();
    });
    vp.addEventListener("pointerup", function () { drag = null; });
    vp.addEventListener("keydown", function (e) {
      var step = 40, handled = true;
      if (e.key === "+" || e.key === "=") center(1.5);
      else if (e.key === "-" || e.key === "_") center(1 / 1.5);
      else if (e.key === "0") { view.z = 1; apply(); }
      else if (e.key === "ArrowLeft") { view.tx += step; apply(); }
      else if (e.key === "ArrowRight") { view.tx -= step; apply(); }
      else if (e.key === "ArrowUp") { view.ty += step; apply(); }
      else if (e.key === "ArrowDown") { view.ty -= step; apply(); }
      else if (e.key === "[") { view.split = Math.max(0, view.split - 5); apply(); }
      else if (e.key === "]") { view.split = Math.min(100, view.split + 5); apply(); }
      else if (e.key === "f") full.click();
      else handled = false;
      if (handled) e.preventDefault();
    });
    document.onfullscreenchange = function () { apply(); };
    window.onresize = function () { apply(); };
    imgA.addEventListener("load", apply);
    apply();

    var strip = el("div", {class: "strip", "data-testid": "strip"});
    ids.forEach(function (id) {
      var setA = el("button", {type: "button", text: "left", "aria-label": "Show " + labelOf(id) + " on the left",
        "aria-pressed": id === a ? "true" : "false", "data-testid": "set-a", "data-key": id});
      var setB = el("button", {type: "button", text: "right", "aria-label": "Show " + labelOf(id) + " on the right",
        "aria-pressed": id === b ? "true" : "false", "data-testid": "set-b", "data-key": id});
      setA.addEventListener("click", function () { update({a: id}); });
      setB.addEventListener("click", function () { update({b: id}); });
      strip.appendChild(el("figure", {"data-version": id}, [
        el("img", {src: im.versions[id], alt: labelOf(id) + ", " + im.name, loading: "lazy"}),
        el("figcaption", {text: sideText(id, i), title: sideText(id, i)}), setA, " ", setB]));
    });
    box.appendChild(strip);
  }

  document.getElementById("top-actions").appendChild(CB.themeButton());
  buildControls(document.getElementById("main"));
  renderTable();
  renderCompare();
})();
