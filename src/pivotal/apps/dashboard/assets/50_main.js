/* pivotal dashboard — boot, login, node selection and the WebSocket message router.
 *
 * Dash calls window.dash_clientside.pivotal.boot() once the shell is rendered, and .login()
 * when the login form is submitted. The selected node is kept in the URL hash (#node=<id>).
 */
(function () {
  "use strict";
  const P = (window.Pivotal = window.Pivotal || {});
  const S = P.state;
  const REFRESH_MS = 5000; // trades / balances / risk have no channel: refreshed on summary changes

  function show(loggedIn) {
    P.$("login").classList.toggle("hidden", loggedIn);
    P.$("app").classList.toggle("hidden", !loggedIn);
  }

  function loginError(text, status) {
    const el = P.$("login-error");
    el.textContent = text || "";
    el.dataset.status = status ? String(status) : "";
  }

  P.onUnauthorized = function (detail) {
    P.ws.stop();
    P.destroyCharts();
    S.token = null;
    S.node = null;
    P.saveToken(null);
    show(false);
    loginError(detail, 401);
  };

  async function start(token) {
    const nodes = await P.api("/nodes", { token: token });
    S.token = token;
    P.saveToken(token);
    S.nodes = nodes;
    S.viewer = false;
    loginError("");
    show(true);
    P.renderOverview();
    P.api("/overview")
      .then((o) => ((S.overview = o), P.renderOverview()))
      .catch((e) => console.warn(e));
    P.ws.start();
    const wanted = (window.location.hash.match(/node=([^&]+)/) || [])[1];
    const first = nodes.find((n) => n.id === decodeURIComponent(wanted || "")) || nodes[0];
    if (first) await selectNode(first.id);
    else P.$("node-title").textContent = "no nodes on this server";
  }

  P.login = async function (token) {
    token = (token || "").trim();
    if (!token) return loginError("paste a token first (pivotal serve prints where the token file is)", 0);
    try {
      await start(token);
    } catch (e) {
      loginError(e.detail || e.message, e.status);
    }
  };

  P.logout = function () {
    P.ws.stop();
    P.destroyCharts();
    S.token = null;
    S.node = null;
    P.saveToken(null);
    show(false);
    loginError("logged out");
  };

  function channelsFor(node) {
    const ch = [];
    for (const symbol of node.symbols)
      for (const tf of node.timeframes) ch.push({ kind: "candles", symbol: symbol, timeframe: tf });
    for (const kind of [
      "summary",
      "controls",
      "models",
      "decisions",
      "fills",
      "orders",
      "positions",
      "alerts",
      "health",
      "equity",
      "overview",
    ])
      ch.push({ kind: kind });
    if (S.cobSymbol) ch.push({ kind: "cob", symbol: S.cobSymbol });
    return ch;
  }

  function renderDecisions(rows) {
    P.schedule("decisions", function () {
      const last = rows.slice(-30).reverse();
      const w = (d) =>
        Object.keys(d.weights || {})
          .map((k) => P.esc(k) + " " + Number(d.weights[k]).toFixed(2))
          .join(", ");
      P.setHtml(
        "decisions-table",
        P.table(
          last,
          [
            ["time", (d) => P.time(d.t)],
            ["symbol", (d) => P.esc(d.symbol)],
            ["action", (d) => "<b>" + P.esc(d.action) + "</b>"],
            ["confidence", (d) => P.ratioPct(d.confidence), "num"],
            [
              "p buy / sell / hold",
              (d) =>
                [d.p_buy, d.p_sell, d.p_hold]
                  .map((v) => (v === null || v === undefined ? "–" : v.toFixed(2)))
                  .join(" / "),
              "num",
            ],
            [
              "executed",
              (d) => (d.executed === null || d.executed === undefined ? "–" : d.executed ? "yes" : "no"),
            ],
            ["reason", (d) => P.esc(d.reason)],
            ["weights", (d) => "<small>" + w(d) + "</small>"],
          ],
          null,
          "no decisions yet",
        ),
      );
    });
  }
  const decisions = [];
  function addDecisions(rows, replace) {
    if (replace) decisions.length = 0;
    const seen = new Set(decisions.map((d) => d.t + "|" + d.symbol));
    for (const d of rows) if (!seen.has(d.t + "|" + d.symbol)) decisions.push(d);
    decisions.sort((a, b) => a.t - b.t);
    if (decisions.length > 500) decisions.splice(0, decisions.length - 500);
    renderDecisions(decisions);
  }

  let lastRefresh = 0;
  function refreshSlow(force) {
    const now = performance.now();
    if (!force && now - lastRefresh < REFRESH_MS) return;
    lastRefresh = now;
    const node = S.node;
    const get = (path, fn) =>
      P.api(P.nodePath(path))
        .then((v) => S.node === node && fn(v))
        .catch((e) => console.warn(path, e.message));
    get("/trades?limit=500", P.renderTrades);
    get("/balances", P.renderBalances);
    get("/risk", P.renderRisk);
  }

  function buildCobSelect(node) {
    for (const id of ["chart-cob", "chart-imbalance"]) {
      const el = P.$(id);
      if (window.Plotly) window.Plotly.purge(el);
      el.innerHTML = "";
      delete el.dataset.drawn;
    }
    const opts = node.symbols
      .map((s) => '<option value="' + P.esc(s) + '">' + P.esc(s) + "</option>")
      .join("");
    P.setHtml("cob-symbol-box", '<select id="cob-symbol" data-testid="cob-symbol">' + opts + "</select>");
    P.$("cob-symbol").addEventListener("change", (ev) => {
      S.cobSymbol = ev.target.value;
      loadCob();
      P.ws.setSubscriptions([{ node: S.node.id, channels: channelsFor(S.node) }]);
    });
  }
  function loadCob() {
    if (!S.cobSymbol) return;
    const node = S.node;
    P.api(P.nodePath("/cob?symbol=" + encodeURIComponent(S.cobSymbol) + "&seconds=120"))
      .then((c) => S.node === node && P.schedulePaced("cob", () => P.drawCob(c)))
      .catch((e) => (P.$("chart-cob").dataset.error = e.message));
  }

  async function selectNode(id) {
    const node = S.nodes.find((n) => n.id === id);
    if (!node) return;
    S.node = node;
    S.loaded = false;
    S.controls = null;
    S.cobSymbol = node.symbols[0] || null;
    window.history.replaceState(null, "", "#node=" + encodeURIComponent(id));
    P.$("node-title").textContent =
      node.name + " · " + node.kind + " · " + node.status + (node.read_only ? " · read-only" : "");
    P.$("node-title").dataset.node = id;
    P.renderOverview();
    P.buildControls();
    buildCobSelect(node);
    P.buildCharts(node);
    P.ws.setSubscriptions([{ node: id, channels: channelsFor(node) }]);
    const get = (path, fn) =>
      P.api(P.nodePath(path))
        .then((v) => S.node === node && fn(v))
        .catch((e) => console.warn(path, e.message));
    await Promise.all([
      get("/controls", P.applyControls),
      get("/summary", P.renderSummary),
      get("/models", P.renderModels),
      get("/decisions?limit=200", (d) => addDecisions(d, true)),
      get("/positions", P.renderPositions),
      get("/orders?open_only=true", P.renderOrders),
      get("/equity", (e) => P.schedule("equity", () => P.drawEquity(e))),
      get("/alerts?limit=200", (a) => P.renderAlerts(a, true)),
      get("/health", P.renderHealth),
    ]);
    refreshSlow(true);
    loadCob();
    await P.loadCharts();
    await P.probeRole();
    // the page is "loaded" once every chart's first draw ran (drawn in animation frames)
    const done = () =>
      P.pendingTasks() ? window.requestAnimationFrame(done) : S.node === node && markLoaded();
    done();
  }
  P.selectNode = selectNode;

  function markLoaded() {
    S.loaded = true;
    document.body.dataset.loaded = "true";
    P.stats.loadedAt = performance.now();
  }

  /** After a reconnect: catch up what the socket missed (incrementally; no chart rebuild). */
  P.onReconnect = function () {
    if (!S.node || !S.loaded) return;
    const node = S.node;
    for (const ch of P.charts.values()) {
      if (!ch.t.length) continue;
      const q =
        "?symbol=" +
        encodeURIComponent(ch.symbol) +
        "&timeframe=" +
        ch.tf +
        "&limit=" +
        S.bars +
        "&since_ms=" +
        ch.t[ch.t.length - 1];
      P.api(P.nodePath("/candles" + q))
        .then((p) => S.node === node && P.onCandles({ symbol: ch.symbol, timeframe: ch.tf, payload: p }))
        .catch(() => {});
    }
    P.api(P.nodePath("/controls"))
      .then((c) => S.node === node && P.applyControls(c))
      .catch(() => {});
  };

  P.onMessage = function (msg) {
    const p = msg.payload;
    if (msg.type === "overview") {
      S.overview = p;
      return P.renderOverview();
    }
    if (!S.node || msg.node !== S.node.id) return;
    switch (msg.type) {
      case "candles":
        return P.onCandles(msg);
      case "summary":
        P.renderSummary(p);
        return refreshSlow(false);
      case "controls":
        return P.applyControls(p);
      case "models":
        return P.renderModels(p);
      case "decisions":
        return addDecisions(p, false);
      case "orders":
        return P.renderOrders(p);
      case "positions":
        return P.renderPositions(p);
      case "alerts":
        return P.renderAlerts(p, false);
      case "health":
        return P.renderHealth(p);
      case "equity":
        return P.schedulePaced("equity", () => P.drawEquity(p));
      case "cob":
        return p.symbol === S.cobSymbol && P.schedulePaced("cob", () => P.drawCob(p));
      case "fills":
        return refreshSlow(false);
      case "command":
        if (p.controls) P.applyControls(p.controls);
        return refreshSlow(true);
      default:
        return undefined;
    }
  };

  P.boot = function () {
    const cfg = P.$("pivotal-config");
    S.api = (cfg && cfg.dataset.api) || "/api/v1";
    S.bars = Number((cfg && cfg.dataset.bars) || 500);
    P.$("logout").addEventListener("click", P.logout);
    P.$("overview-table").addEventListener("click", (ev) => {
      const row = ev.target.closest("tr[data-node]");
      if (row && (!S.node || row.dataset.node !== S.node.id)) selectNode(row.dataset.node);
    });
    const saved = P.loadToken();
    if (saved) {
      start(saved).catch((e) => {
        P.saveToken(null);
        show(false);
        loginError(e.detail || e.message, e.status);
      });
    } else {
      show(false);
    }
  };

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    pivotal: {
      boot: function () {
        if (!P.booted) {
          P.booted = true;
          P.boot();
        }
        return "";
      },
      login: function (nClicks, nSubmit, token) {
        P.login(token);
        return window.dash_clientside.no_update;
      },
    },
  });
})();
