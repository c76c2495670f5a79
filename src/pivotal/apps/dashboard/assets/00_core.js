/* pivotal dashboard — core: state, API fetch, the requestAnimationFrame scheduler, helpers.
 *
 * Everything the page shows comes from the API with the user's bearer token (kept in
 * sessionStorage only). DOM and chart writes are queued with P.schedule(key, fn) and run in
 * requestAnimationFrame with a time budget per frame, so 1 Hz updates of many charts never
 * make one long task. Test hooks: window.Pivotal.stats (counters) and data-* attributes.
 */
(function () {
  "use strict";
  const P = (window.Pivotal = window.Pivotal || {});
  const TOKEN_KEY = "pivotal.token";

  P.state = {
    token: null,
    api: "/api/v1",
    bars: 200,
    nodes: [], // NodeInfo[]
    overview: [], // Summary[]
    node: null, // selected NodeInfo
    controls: null, // Controls
    viewer: false, // true once the API answered 403 to a command (read-only token)
    viewerDetail: "",
    loaded: false, // the selected node's charts are drawn
  };

  // Counters read by the tests (a rebuild is Plotly.newPlot/react on a candle chart).
  P.stats = {
    newPlot: 0,
    react: 0,
    restyle: 0,
    extend: 0,
    candleRebuildsAfterLoad: 0,
    wsMessages: 0,
    candleMessages: 0,
    frames: 0,
    tasksRun: 0,
    deferredOffscreen: 0,
    chartDraws: 0, // candle chart draws (first and live) and their time in ms
    chartDrawMs: 0,
    chartDrawMaxMs: 0,
    paced: 0, // chart draws postponed by the pacing (see 20_charts.js)
    paceMs: 0,
    subPixel: 0, // updates that would move no pixel (drawn later, within 5 s)
    smallDrawMs: 0, // time in Plotly.react of the COB, imbalance and equity figures
  };

  // -- token ----------------------------------------------------------------------------------
  P.loadToken = function () {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY);
    } catch (e) {
      return null;
    }
  };
  P.saveToken = function (token) {
    try {
      if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) {
      /* storage disabled: the token lives in memory only */
    }
  };

  // -- API ------------------------------------------------------------------------------------
  /** An API error carrying the HTTP status and the server's ``detail``. */
  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
    }
  }
  P.ApiError = ApiError;

  function detailOf(body, status) {
    if (body && typeof body.detail === "string") return body.detail;
    if (body && Array.isArray(body.detail)) {
      return body.detail.map((d) => (d.loc ? d.loc.join(".") + ": " : "") + d.msg).join("; ");
    }
    return "HTTP " + status;
  }

  /** fetch() an API path (relative to the API prefix) with the bearer token; JSON in and out. */
  P.api = async function (path, opts) {
    opts = opts || {};
    const headers = { Accept: "application/json" };
    const token = opts.token || P.state.token;
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method: opts.method || "GET", headers: headers, cache: "no-store" };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    let resp;
    try {
      resp = await fetch(P.state.api + path, init);
    } catch (e) {
      throw new ApiError(0, "the API did not answer (" + e.message + "); is the server running?");
    }
    let body = null;
    const text = await resp.text();
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (e) {
        body = { detail: text.slice(0, 300) };
      }
    }
    if (!resp.ok) {
      const err = new ApiError(resp.status, detailOf(body, resp.status));
      if (resp.status === 401 && !opts.token && P.onUnauthorized) P.onUnauthorized(err.detail);
      throw err;
    }
    return body;
  };

  P.nodePath = function (suffix) {
    return "/nodes/" + encodeURIComponent(P.state.node.id) + suffix;
  };

  // -- frame scheduler ------------------------------------------------------------------------
  // Keyed tasks: scheduling the same key again before it ran replaces the older task (a
  // table is redrawn once per frame at most). Tasks run in rAF until FRAME_BUDGET_MS is spent;
  // the rest wait for the next frame.
  const FRAME_BUDGET_MS = 8;
  const queue = new Map();
  let frameRequested = false;

  function runFrame() {
    frameRequested = false;
    P.stats.frames += 1;
    const start = performance.now();
    for (const [key, fn] of queue) {
      queue.delete(key);
      try {
        fn();
      } catch (e) {
        console.error("pivotal: update " + key + " failed", e);
      }
      P.stats.tasksRun += 1;
      if (performance.now() - start > FRAME_BUDGET_MS) break;
    }
    if (queue.size) requestFrame();
  }
  function requestFrame() {
    if (!frameRequested) {
      frameRequested = true;
      window.requestAnimationFrame(runFrame);
    }
  }
  P.schedule = function (key, fn) {
    queue.delete(key); // re-insert at the end: older keys run first
    queue.set(key, fn);
    requestFrame();
  };
  /**
   * Like schedule, for a figure that may redraw at most once per max(900 ms, 4 × its last
   * draw time): a call in between keeps only the newest ``fn``, run when the interval ends.
   */
  const paced = new Map(); // key -> {last, ema, timer, fn}
  P.schedulePaced = function (key, fn) {
    let st = paced.get(key);
    if (!st) paced.set(key, (st = { last: 0, ema: 0, timer: null, fn: null }));
    st.fn = fn;
    if (st.timer) return;
    const run = () => {
      st.timer = null;
      P.schedule(key, () => {
        const t0 = performance.now();
        st.fn();
        st.ema = 0.7 * st.ema + 0.3 * (performance.now() - t0);
        st.last = performance.now();
      });
    };
    const wait = st.last + Math.max(900, 4 * st.ema) - performance.now();
    if (wait <= 0) run();
    else st.timer = setTimeout(run, wait);
  };

  P.pendingTasks = function () {
    return queue.size;
  };

  // -- helpers --------------------------------------------------------------------------------
  P.$ = function (id) {
    return document.getElementById(id);
  };
  P.esc = function (v) {
    return String(v === null || v === undefined ? "" : v)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;");
  };
  /** A symbol as an id fragment: BTC/USDT -> BTCUSDT. */
  P.symId = function (symbol) {
    return String(symbol).replace(/[^A-Za-z0-9]/g, "");
  };
  P.num = function (v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const d = digits === undefined ? 2 : digits;
    return Number(v).toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
  };
  P.pct = function (v, digits) {
    return v === null || v === undefined ? "–" : P.num(v, digits === undefined ? 2 : digits) + " %";
  };
  P.ratioPct = function (v) {
    return v === null || v === undefined ? "–" : P.num(v * 100, 1) + " %";
  };
  P.time = function (ms) {
    if (ms === null || ms === undefined) return "–";
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  };

  /** Set innerHTML only when it changed (no DOM churn for identical 1 Hz payloads). */
  P.setHtml = function (id, html) {
    const el = P.$(id);
    if (el && el.__pivotalHtml !== html) {
      el.__pivotalHtml = html;
      el.innerHTML = html;
    }
    return el;
  };

  /**
   * An HTML table: cols = [[header, row => cellHtml, className?], ...]; rowAttrs(row) gives
   * the <tr>'s extra attributes (e.g. data-testid).
   */
  P.table = function (rows, cols, rowAttrs, empty) {
    if (!rows || !rows.length) return '<p class="empty">' + P.esc(empty || "none") + "</p>";
    let h = "<table><thead><tr>";
    for (const c of cols) h += "<th>" + P.esc(c[0]) + "</th>";
    h += "</tr></thead><tbody>";
    for (const r of rows) {
      h += "<tr" + (rowAttrs ? " " + rowAttrs(r) : "") + ">";
      for (const c of cols) h += '<td class="' + (c[2] || "") + '">' + c[1](r) + "</td>";
      h += "</tr>";
    }
    return h + "</tbody></table>";
  };

  P.signClass = function (v) {
    return v > 0 ? "pos" : v < 0 ? "neg" : "";
  };
})();
