/* pivotal dashboard — candle charts with pivots, predicted pivots, decisions and fills.
 *
 * A candle chart is drawn once with Plotly.newPlot (traces: 0 candles, 1 pivots of levels
 * 1–5 (colour and size per level), 2 the PivotCNN's predicted next pivots with confidence
 * labels, 3 decisions, 4 fills). A WebSocket update is merged into the chart's columns (a bar
 * whose open time equals the last bar's replaces it, newer ones append, the oldest drop past
 * the bar limit) and drawn with one Plotly call — extendTraces when bars were only appended,
 * else one Plotly.update (restyle) of the candle columns and of the overlays when they
 * changed — never a rebuild. Draws are paced (at most ~1 Hz; slower when drawing would take
 * more than a quarter of the main thread), a change of less than a pixel waits up to 5 s,
 * and a chart scrolled out of view keeps merging but draws when it comes back into view.
 * The small figures (order book, equity) are in 25_figures.js.
 */
(function () {
  "use strict";
  const P = (window.Pivotal = window.Pivotal || {});
  const LEVEL_COLORS = ["#8c8c8c", "#1f77b4", "#9467bd", "#ff7f0e", "#d62728"];
  const SIDE_STYLE = {
    buy: ["triangle-up", "#1a9850"],
    sell: ["triangle-down", "#d73027"],
    close: ["x", "#555555"],
    hold: ["circle-open", "#999999"],
  };
  const CONFIG = { displayModeBar: false, responsive: true, scrollZoom: false };

  const charts = (P.charts = new Map()); // chart id -> chart state
  let observer = null;

  function baseLayout(title, height) {
    return {
      height: height,
      margin: { l: 50, r: 10, t: 24, b: 24 },
      title: { text: title, font: { size: 12 }, x: 0.01, y: 0.98 },
      showlegend: false,
      xaxis: { type: "date", rangeslider: { visible: false } },
      yaxis: { side: "left", fixedrange: false },
      uirevision: "keep",
      paper_bgcolor: "#ffffff",
      plot_bgcolor: "#fbfbfb",
    };
  }

  P.chartId = function (symbol, tf) {
    return "chart-" + P.symId(symbol) + "-" + tf;
  };

  // -- candle chart state ---------------------------------------------------------------------
  function newChart(id, symbol, tf) {
    return {
      id: id,
      symbol: symbol,
      tf: tf,
      t: [],
      o: [],
      h: [],
      l: [],
      c: [],
      pivots: new Map(),
      predictions: [],
      markers: new Map(),
      overlayDirty: true,
      replaced: false,
      dirty: false,
      visible: true,
      drawn: false,
      updates: 0,
    };
  }

  /** Merge a CandlesPayload; ``full`` replaces everything (the REST answer on load). */
  function merge(ch, payload, full) {
    const b = payload.bars;
    if (full) {
      ch.t = b.t.slice();
      ch.o = b.open.slice();
      ch.h = b.high.slice();
      ch.l = b.low.slice();
      ch.c = b.close.slice();
      ch.pivots.clear();
      ch.markers.clear();
      ch.predictions = [];
    } else {
      for (let i = 0; i < b.t.length; i++) {
        const t = b.t[i];
        const n = ch.t.length;
        let at = -1;
        if (n && t === ch.t[n - 1]) at = n - 1;
        else if (n && t < ch.t[n - 1]) at = ch.t.lastIndexOf(t);
        if (at >= 0) {
          ch.replaced = true;
          ch.o[at] = b.open[i];
          ch.h[at] = b.high[i];
          ch.l[at] = b.low[i];
          ch.c[at] = b.close[i];
        } else if (!n || t > ch.t[n - 1]) {
          ch.t.push(t);
          ch.o.push(b.open[i]);
          ch.h.push(b.high[i]);
          ch.l.push(b.low[i]);
          ch.c.push(b.close[i]);
        }
      }
      const extra = ch.t.length - P.state.bars;
      if (extra > 0) {
        for (const col of [ch.t, ch.o, ch.h, ch.l, ch.c]) col.splice(0, extra);
      }
    }
    const first = ch.t.length ? ch.t[0] : -Infinity;
    let changed = full;
    for (const p of payload.pivots || []) {
      const key = p.level + "|" + p.kind + "|" + p.t;
      if (!ch.pivots.has(key)) changed = true;
      ch.pivots.set(key, p);
    }
    for (const m of payload.markers || []) {
      if (m.side === "hold") continue;
      const key = m.t + "|" + m.kind + "|" + m.side + "|" + m.price;
      if (!ch.markers.has(key)) changed = true;
      ch.markers.set(key, m);
    }
    if (payload.predictions && payload.predictions.length) {
      changed = changed || JSON.stringify(payload.predictions) !== JSON.stringify(ch.predictions);
      ch.predictions = payload.predictions;
    }
    for (const [k, p] of ch.pivots) if (p.t < first) (ch.pivots.delete(k), (changed = true));
    for (const [k, m] of ch.markers) if (m.t < first) (ch.markers.delete(k), (changed = true));
    ch.overlayDirty = ch.overlayDirty || changed;
  }

  /** The close of the bar holding time t (a decision without a price sits on it), or null. */
  function closeAt(ch, t) {
    let lo = 0;
    let hi = ch.t.length - 1;
    if (hi < 0 || t < ch.t[0]) return null;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ch.t[mid] <= t) lo = mid;
      else hi = mid - 1;
    }
    return ch.c[lo];
  }

  function overlayTraces(ch) {
    // one trace for the 5 levels (a trace each would cost a redraw each): colour and size
    // per point say the level, the triangle's direction the kind
    const piv = {
      type: "scatter",
      mode: "markers",
      name: "pivots L1–L5",
      x: [],
      y: [],
      text: [],
      hoverinfo: "x+y+text",
      marker: { size: [], color: [], symbol: [] },
    };
    const pivots = Array.from(ch.pivots.values()).sort((p, q) => p.level - q.level);
    for (const p of pivots) {
      piv.x.push(p.t);
      piv.y.push(p.price);
      piv.text.push("L" + p.level + " " + p.kind);
      piv.marker.symbol.push(p.kind === "high" ? "triangle-down" : "triangle-up");
      piv.marker.color.push(LEVEL_COLORS[p.level - 1]);
      piv.marker.size.push(4 + p.level * 2);
    }
    const pred = {
      type: "scatter",
      mode: "lines+markers+text",
      name: "predicted pivots",
      x: [],
      y: [],
      text: [],
      textposition: "top center",
      textfont: { size: 10, color: "#6a3d9a" },
      line: { dash: "dot", color: "#6a3d9a", width: 1.5 },
      marker: { size: 6, color: "#6a3d9a", symbol: "diamond" },
      hoverinfo: "x+y+text",
    };
    for (const q of ch.predictions) {
      pred.x.push(q.from_t, q.t, null);
      pred.y.push(q.from_price, q.price, null);
      pred.text.push("", "L" + q.level + " " + q.kind + " " + Math.round(q.confidence * 100) + "%", "");
    }
    const marks = (kind) => {
      const tr = {
        type: "scatter",
        mode: "markers",
        name: kind === "fill" ? "fills" : "decisions",
        x: [],
        y: [],
        text: [],
        hoverinfo: "x+y+text",
        marker: {
          size: kind === "fill" ? 9 : 11,
          symbol: [],
          color: [],
          line: { width: 1, color: "#000" },
          opacity: kind === "fill" ? 1 : 0.7,
        },
      };
      for (const m of ch.markers.values()) {
        if (m.kind !== kind) continue;
        const price = m.price === null || m.price === undefined ? closeAt(ch, m.t) : m.price;
        if (price === null) continue;
        const st = SIDE_STYLE[m.side] || SIDE_STYLE.hold;
        tr.x.push(m.t);
        tr.y.push(price);
        const conf =
          m.confidence === null || m.confidence === undefined
            ? ""
            : " " + Math.round(m.confidence * 100) + "%";
        tr.text.push(m.label || m.side + conf + (m.quantity ? " qty " + m.quantity : ""));
        tr.marker.symbol.push(kind === "fill" ? "circle" : st[0]);
        tr.marker.color.push(st[1]);
      }
      return tr;
    };
    return [piv, pred, marks("decision"), marks("fill")];
  }

  function candleTrace(ch) {
    return {
      type: "candlestick",
      name: ch.symbol + " " + ch.tf,
      x: ch.t.slice(), // Plotly gets copies: ch.* stay the merged truth
      open: ch.o.slice(),
      high: ch.h.slice(),
      low: ch.l.slice(),
      close: ch.c.slice(),
      increasing: { line: { color: "#1a9850", width: 1 } },
      decreasing: { line: { color: "#d73027", width: 1 } },
      hoverinfo: "x+y",
    };
  }

  const DATE_AXIS = { "xaxis.type": "date" }; // a restyle of x would re-guess the axis type

  /**
   * Bring the drawn chart up to ch with one Plotly redraw: extendTraces when bars were only
   * appended, else one Plotly.update (a restyle of the candle columns — the last candle
   * changes each second — plus the overlay traces when their points changed).
   */
  function liveUpdate(ch, el) {
    const tr = el.data[0];
    const n0 = tr.x.length;
    // align the drawn bars with ch: ch may have dropped old bars (gdOff) or hold older ones (chOff)
    let gdOff = n0 && ch.t.length ? tr.x.indexOf(ch.t[0]) : -1;
    let chOff = 0;
    if (gdOff < 0 && n0) {
      gdOff = 0;
      chOff = ch.t.indexOf(tr.x[0]);
    }
    const shared = n0 - gdOff;
    const aligned =
      n0 > 0 && chOff >= 0 && chOff + shared <= ch.t.length && ch.t[chOff + shared - 1] === tr.x[n0 - 1];
    const from = chOff + shared;
    if (aligned && !ch.replaced && !ch.overlayDirty) {
      if (from >= ch.t.length) return; // nothing new
      const ext = {
        x: [ch.t.slice(from)],
        open: [ch.o.slice(from)],
        high: [ch.h.slice(from)],
        low: [ch.l.slice(from)],
        close: [ch.c.slice(from)],
      };
      window.Plotly.extendTraces(el, ext, [0], P.state.bars);
      P.stats.extend += 1;
      return;
    }
    const upd = {
      x: [ch.t.slice()],
      open: [ch.o.slice()],
      high: [ch.h.slice()],
      low: [ch.l.slice()],
      close: [ch.c.slice()],
    };
    let traces = [0];
    if (ch.overlayDirty) {
      const ov = overlayTraces(ch);
      const none = ov.map(() => undefined); // restyle skips a trace whose value is undefined
      for (const k of ["open", "high", "low", "close"]) upd[k] = upd[k].concat(none);
      upd.x = upd.x.concat(ov.map((t) => t.x));
      upd.y = [undefined].concat(ov.map((t) => t.y));
      upd.text = [undefined].concat(ov.map((t) => t.text));
      for (const k of ["symbol", "color", "size"])
        upd["marker." + k] = [undefined].concat(ov.map((t) => t.marker[k]));
      traces = [0, 1, 2, 3, 4];
      ch.overlayDirty = false;
    }
    window.Plotly.update(el, upd, DATE_AXIS, traces);
    P.stats.restyle += 1;
  }

  function writeAttrs(ch, el) {
    el.dataset.bars = String(ch.t.length);
    el.dataset.lastT = ch.t.length ? String(ch.t[ch.t.length - 1]) : "";
    el.dataset.lastClose = ch.c.length ? String(ch.c[ch.c.length - 1]) : "";
    el.dataset.pivots = String(ch.pivots.size);
    el.dataset.predictions = String(ch.predictions.length);
    el.dataset.markers = String(ch.markers.size);
    el.dataset.updates = String(ch.updates);
  }

  function draw(ch) {
    const el = P.$(ch.id);
    if (!el || !window.Plotly) return;
    const t0 = performance.now();
    if (!ch.drawn) {
      window.Plotly.newPlot(
        el,
        [candleTrace(ch)].concat(overlayTraces(ch)),
        baseLayout(ch.symbol + " · " + ch.tf, 260),
        CONFIG,
      );
      P.stats.newPlot += 1;
      if (P.state.loaded) P.stats.candleRebuildsAfterLoad += 1;
      ch.drawn = true;
      ch.overlayDirty = false;
    } else {
      liveUpdate(ch, el);
    }
    ch.dirty = false;
    ch.replaced = false;
    writeAttrs(ch, el);
    const n = ch.t.length;
    ch.drawnLast = n
      ? { t: ch.t[n - 1], first: ch.t[0], o: ch.o[n - 1], h: ch.h[n - 1], l: ch.l[n - 1], c: ch.c[n - 1] }
      : null;
    const ms = performance.now() - t0;
    ch.lastDraw = performance.now();
    ch.drawEma = ch.drawEma === undefined ? ms : 0.7 * ch.drawEma + 0.3 * ms;
    P.stats.chartDraws += 1;
    P.stats.chartDrawMs += ms;
    P.stats.chartDrawMaxMs = Math.max(P.stats.chartDrawMaxMs, ms);
  }

  // -- grid -------------------------------------------------------------------------------
  /** Build the node's chart grid (one row per symbol, one column per timeframe). */
  P.buildCharts = function (node) {
    P.destroyCharts();
    const grid = P.$("charts");
    if (!grid) return;
    grid.style.setProperty("--cols", String(Math.max(1, node.timeframes.length)));
    let html = "";
    for (const symbol of node.symbols) {
      for (const tf of node.timeframes) {
        const id = P.chartId(symbol, tf);
        html +=
          '<div class="chart" id="' +
          id +
          '" data-testid="' +
          id +
          '" data-symbol="' +
          P.esc(symbol) +
          '" data-timeframe="' +
          tf +
          '" data-bars="0"></div>';
        charts.set(id, newChart(id, symbol, tf));
      }
    }
    grid.innerHTML = html;
    observer = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          const ch = charts.get(e.target.id);
          if (!ch) continue;
          ch.visible = e.isIntersecting;
          if (ch.visible && ch.dirty) requestDraw(ch);
        }
      },
      { rootMargin: "200px" },
    );
    for (const id of charts.keys()) observer.observe(P.$(id));
  };

  P.destroyCharts = function () {
    if (observer) observer.disconnect();
    observer = null;
    for (const [id, ch] of charts) {
      clearTimeout(ch.timer);
      const el = P.$(id);
      if (el && window.Plotly) window.Plotly.purge(el);
    }
    charts.clear();
  };

  /** Load every chart's candles by REST (a few at a time) and draw them. */
  P.loadCharts = async function () {
    const list = Array.from(charts.values());
    const node = P.state.node;
    const worker = async () => {
      while (list.length) {
        const ch = list.shift();
        const q =
          "?symbol=" + encodeURIComponent(ch.symbol) + "&timeframe=" + ch.tf + "&limit=" + P.state.bars;
        try {
          const payload = await P.api(P.nodePath("/candles" + q));
          if (P.state.node !== node) return;
          merge(ch, payload, true);
          P.schedule("chart:" + ch.id, () => draw(ch));
        } catch (e) {
          const el = P.$(ch.id);
          if (el) {
            el.dataset.error = e.message;
            el.innerHTML = '<p class="error">' + P.esc(ch.symbol + " " + ch.tf + ": " + e.message) + "</p>";
          }
        }
      }
    };
    await Promise.all([worker(), worker(), worker()]);
  };

  // -- pacing -------------------------------------------------------------------------------
  // A chart redraws at most once per PACE_MIN_MS; when drawing the visible charts takes more
  // than 1/PACE_SHARE of that interval (a slow machine), the interval stretches so chart
  // drawing stays under that share of the main thread. The data is merged at every message.
  const PACE_MIN_MS = 900; // 1 Hz messages, with slack for their jitter
  const PACE_SHARE = 4; // charts may take 1/4 of the main thread

  function paceMs() {
    let sum = 0;
    for (const ch of charts.values()) if (ch.visible && ch.drawn) sum += ch.drawEma || 0;
    const ms = Math.max(PACE_MIN_MS, PACE_SHARE * sum);
    P.stats.paceMs = Math.round(ms);
    return ms;
  }

  const STALE_MS = 5000; // a change under a pixel is drawn after this at the latest

  /**
   * Whether the merged data would move no pixel: the same bars as drawn, no overlay change,
   * and the last candle's high, low and close moved less than one pixel of the y axis.
   */
  function subPixel(ch) {
    const d = ch.drawnLast;
    const el = P.$(ch.id);
    const ya = el && el._fullLayout && el._fullLayout.yaxis;
    const n = ch.t.length;
    if (!d || !ya || ch.overlayDirty || !n || ch.t[n - 1] !== d.t || ch.t[0] !== d.first) return false;
    const span = Math.abs(ya.range[1] - ya.range[0]);
    if (!(span > 0) || !(ya._length > 0)) return false;
    if (ch.h[n - 1] > ya.range[1] || ch.l[n - 1] < ya.range[0]) return false; // autorange moves
    const moved = Math.max(
      Math.abs(ch.h[n - 1] - d.h),
      Math.abs(ch.l[n - 1] - d.l),
      Math.abs(ch.c[n - 1] - d.c),
      Math.abs(ch.o[n - 1] - d.o),
    );
    return (moved / span) * ya._length < 1;
  }

  function requestDraw(ch) {
    if (!ch.visible) {
      P.stats.deferredOffscreen += 1;
      return;
    }
    if (ch.timer) return; // a draw is already due: it will take the merged data
    let wait = (ch.lastDraw || 0) + paceMs() - performance.now();
    if (subPixel(ch)) {
      P.stats.subPixel += 1;
      wait = Math.max(wait, (ch.lastDraw || 0) + STALE_MS - performance.now());
    }
    if (wait <= 0) return P.schedule("chart:" + ch.id, () => draw(ch));
    P.stats.paced += 1;
    ch.timer = setTimeout(() => {
      ch.timer = null;
      if (ch.dirty && ch.visible) P.schedule("chart:" + ch.id, () => draw(ch));
    }, wait);
  }

  /** A WebSocket "candles" message. */
  P.onCandles = function (msg) {
    const ch = charts.get(P.chartId(msg.symbol, msg.timeframe));
    if (!ch || !ch.drawn) return; // not loaded yet: the REST answer will carry it
    P.stats.candleMessages += 1;
    merge(ch, msg.payload, false);
    ch.updates += 1;
    ch.dirty = true;
    requestDraw(ch);
  };

  P.chartLayout = baseLayout;
  P.PLOT_CONFIG = CONFIG;
})();
