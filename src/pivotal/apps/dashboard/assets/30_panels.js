/* pivotal dashboard — tables: nodes overview, models, trading, health.
 *
 * Each render function takes the API's JSON (the REST answer or the WebSocket payload, the
 * same shape) and writes its container in the next animation frame, only when the HTML
 * changed. Rows carry data-testid (node-row-<id>, model-row-<name>, position-row-<SYM>,
 * stream-row-<i>, process-row-<name>); positions carry btn-force-exit-<SYM>.
 */
(function () {
  "use strict";
  const P = (window.Pivotal = window.Pivotal || {});
  const esc = P.esc;

  // -- nodes overview ---------------------------------------------------------------------------
  P.renderOverview = function () {
    P.schedule("overview", function () {
      const byId = new Map(P.state.overview.map((s) => [s.node, s]));
      const sel = P.state.node ? P.state.node.id : null;
      const rows = P.state.nodes.map((n) => ({ n: n, s: byId.get(n.id) || {} }));
      const html = P.table(
        rows,
        [
          ["node", (r) => "<b>" + esc(r.n.name) + "</b><br><small>" + esc(r.n.id) + "</small>"],
          ["kind", (r) => esc(r.n.kind) + (r.n.read_only ? " (read-only)" : "")],
          [
            "status",
            (r) =>
              '<span class="status status-' +
              esc(r.n.status) +
              '">' +
              esc(r.n.status) +
              "</span>" +
              (r.s.killed ? ' <span class="badge neg">killed</span>' : "") +
              (r.s.entries_stopped ? ' <span class="badge">no entries</span>' : ""),
          ],
          ["balance", (r) => P.num(r.s.balance) + " " + esc(r.s.currency || ""), "num"],
          ["equity", (r) => P.num(r.s.equity), "num"],
          [
            "PnL",
            (r) =>
              '<span class="' +
              P.signClass(r.s.pnl) +
              '">' +
              P.num(r.s.pnl) +
              " (" +
              P.pct(r.s.pnl_pct) +
              ")</span>",
            "num",
          ],
          ["closed trades", (r) => esc(r.s.closed_trades === undefined ? "–" : r.s.closed_trades), "num"],
          ["win rate", (r) => P.ratioPct(r.s.win_rate), "num"],
          ["open positions", (r) => esc(r.s.open_positions === undefined ? "–" : r.s.open_positions), "num"],
          ["drawdown", (r) => P.pct(r.s.drawdown_pct), "num"],
          ["last", (r) => P.time(r.s.last_ms || r.n.last_ms)],
        ],
        (r) =>
          'id="node-row-' +
          esc(r.n.id) +
          '" data-testid="node-row-' +
          esc(r.n.id) +
          '" data-node="' +
          esc(r.n.id) +
          '" class="node-row' +
          (r.n.id === sel ? " selected" : "") +
          '" tabindex="0"',
        "no nodes on this server",
      );
      P.setHtml("overview-table", html);
    });
  };

  // -- models -------------------------------------------------------------------------------------
  P.renderModels = function (models) {
    P.schedule("models", function () {
      const out = (m) =>
        Object.keys(m.output || {})
          .map((k) => esc(k) + "=" + (m.output[k] === null ? "–" : Number(m.output[k]).toFixed(3)))
          .join(" ");
      P.setHtml(
        "models-table",
        P.table(
          models,
          [
            [
              "model",
              (m) =>
                "<b>" +
                esc(m.name) +
                "</b>" +
                (m.version !== null && m.version !== undefined ? " v" + esc(m.version) : ""),
            ],
            ["symbol", (m) => esc(m.symbol || "")],
            ["state", (m) => '<span class="state state-' + esc(m.state) + '">' + esc(m.state) + "</span>"],
            ["latest", (m) => esc(m.action || "–") + " <small>" + P.time(m.t) + "</small>"],
            ["confidence", (m) => P.ratioPct(m.confidence), "num"],
            ["output", (m) => '<small class="mono">' + out(m) + "</small>"],
            [
              "rolling accuracy",
              (m) => P.ratioPct(m.accuracy) + " <small>n=" + esc(m.accuracy_n) + "</small>",
              "num",
            ],
            [
              "gate weight",
              (m) =>
                m.gate_weight === null || m.gate_weight === undefined
                  ? "–"
                  : Number(m.gate_weight).toFixed(3),
              "num",
            ],
            [
              "error",
              (m) =>
                m.error
                  ? '<details><summary class="neg">error</summary><pre>' + esc(m.error) + "</pre></details>"
                  : "",
            ],
          ],
          (m) => 'data-testid="model-row-' + esc(m.name) + (m.symbol ? "-" + P.symId(m.symbol) : "") + '"',
          "no models",
        ),
      );
    });
  };

  // -- trading --------------------------------------------------------------------------------------
  P.renderSummary = function (s) {
    P.schedule("summary", function () {
      const kv = [
        ["balance", P.num(s.balance) + " " + esc(s.currency)],
        ["equity", P.num(s.equity)],
        [
          "PnL",
          '<span class="' + P.signClass(s.pnl) + '">' + P.num(s.pnl) + " (" + P.pct(s.pnl_pct) + ")</span>",
        ],
        ["drawdown", P.pct(s.drawdown_pct) + " (max " + P.pct(s.max_drawdown_pct) + ")"],
        ["closed trades", esc(s.closed_trades)],
        ["win rate", P.ratioPct(s.win_rate)],
        ["open positions", esc(s.open_positions)],
        ["open orders", esc(s.open_orders)],
        ["entries", s.entries_stopped ? '<span class="badge">stopped</span>' : "allowed"],
        ["kill switch", s.killed ? '<span class="badge neg">fired</span>' : "armed"],
      ];
      P.setHtml(
        "pnl-summary",
        kv
          .map((p) => '<div><span class="k">' + p[0] + '</span><span class="v">' + p[1] + "</span></div>")
          .join(""),
      );
    });
    const i = P.state.overview.findIndex((o) => o.node === s.node);
    if (i >= 0) P.state.overview[i] = s;
    else P.state.overview.push(s);
    P.renderOverview();
  };

  P.renderPositions = function (positions) {
    P.schedule("positions", function () {
      // locked or not as of the drawing, not of the message (the role may arrive between)
      const ro = P.controlsLocked ? P.controlsLocked() : false;
      const el = P.setHtml(
        "positions-table",
        P.table(
          positions.filter((p) => p.quantity !== 0),
          [
            ["symbol", (p) => "<b>" + esc(p.symbol) + "</b>"],
            ["quantity", (p) => P.num(p.quantity, 6), "num"],
            ["entry", (p) => P.num(p.entry_price), "num"],
            ["mark", (p) => P.num(p.mark_price), "num"],
            ["value", (p) => P.num(p.value), "num"],
            [
              "unrealized PnL",
              (p) =>
                '<span class="' + P.signClass(p.unrealized_pnl) + '">' + P.num(p.unrealized_pnl) + "</span>",
              "num",
            ],
            [
              "",
              (p) =>
                '<button class="danger force-exit" id="btn-force-exit-' +
                P.symId(p.symbol) +
                '" data-testid="btn-force-exit-' +
                P.symId(p.symbol) +
                '" data-symbol="' +
                esc(p.symbol) +
                '"' +
                (ro ? " disabled" : "") +
                ">Force exit</button>",
            ],
          ],
          (p) => 'data-testid="position-row-' + P.symId(p.symbol) + '"',
          "no open positions",
        ),
      );
      if (el) el.dataset.count = String(positions.filter((p) => p.quantity !== 0).length);
    });
  };

  P.renderOrders = function (orders) {
    const done = ["filled", "canceled", "cancelled", "rejected", "expired", "closed"];
    const open = orders.filter((o) => !done.includes(String(o.status).toLowerCase()));
    P.schedule("orders", function () {
      P.setHtml(
        "orders-table",
        P.table(
          open,
          [
            ["time", (o) => P.time(o.created_ms)],
            ["symbol", (o) => esc(o.symbol)],
            ["side", (o) => esc(o.side)],
            ["type", (o) => esc(o.type)],
            ["status", (o) => esc(o.status)],
            ["quantity", (o) => P.num(o.quantity, 6), "num"],
            ["filled", (o) => P.num(o.filled, 6), "num"],
            ["limit", (o) => P.num(o.limit_price), "num"],
            ["stop", (o) => P.num(o.stop_price), "num"],
            ["reason", (o) => esc(o.reason)],
          ],
          (o) => 'data-testid="order-row-' + esc(o.client_order_id) + '"',
          "no open orders",
        ),
      );
    });
  };

  P.renderRisk = function (risk) {
    P.schedule("risk", function () {
      const keys = Array.from(new Set(Object.keys(risk.metrics).concat(Object.keys(risk.limits))));
      const rows = keys.map((k) => ({ k: k, v: risk.metrics[k], lim: risk.limits[k] }));
      let html = P.table(
        rows,
        [
          ["metric", (r) => esc(r.k)],
          ["value", (r) => P.num(r.v, 4), "num"],
          ["limit", (r) => P.num(r.lim, 4), "num"],
        ],
        (r) => 'data-testid="risk-' + esc(r.k) + '"',
        "no risk metrics",
      );
      html +=
        "<p>entries " +
        (risk.entries_stopped ? "<b>stopped</b>" : "allowed") +
        (risk.breaker ? ' · breaker <b class="neg">' + esc(risk.breaker) + "</b>" : "") +
        "</p>";
      P.setHtml("risk-table", html);
    });
  };

  P.renderBalances = function (balances) {
    P.schedule("balances", function () {
      P.setHtml(
        "balances-table",
        P.table(
          balances,
          [
            ["asset", (b) => esc(b.asset)],
            ["free", (b) => P.num(b.free, 6), "num"],
            ["locked", (b) => P.num(b.locked, 6), "num"],
            ["total", (b) => P.num(b.total, 6), "num"],
          ],
          (b) => 'data-testid="balance-' + esc(b.asset) + '"',
          "no balances",
        ),
      );
    });
  };

  function alertsHtml(alerts) {
    if (!alerts.length) return '<p class="empty">none</p>';
    return (
      "<ul>" +
      alerts
        .slice(-50)
        .reverse()
        .map(
          (a) =>
            '<li class="alert alert-' +
            esc(a.level) +
            '"><small>' +
            P.time(a.t) +
            "</small> <b>" +
            esc(a.level) +
            "</b> " +
            esc(a.kind) +
            ": " +
            esc(a.message) +
            "</li>",
        )
        .join("") +
      "</ul>"
    );
  }
  const alertState = new Map();
  P.renderAlerts = function (alerts, replace) {
    if (replace) alertState.clear();
    for (const a of alerts) alertState.set(a.t + "|" + a.kind + "|" + a.message, a);
    const all = Array.from(alertState.values())
      .sort((a, b) => a.t - b.t)
      .slice(-200);
    P.schedule("alerts", () => P.setHtml("alerts-list", alertsHtml(all)));
  };

  P.renderTrades = function (trades) {
    P.schedule("trades", function () {
      const el = P.setHtml(
        "trades-table",
        P.table(
          trades.slice(-200).reverse(),
          [
            ["symbol", (t) => esc(t.symbol)],
            ["side", (t) => esc(t.side)],
            ["quantity", (t) => P.num(t.quantity, 6), "num"],
            ["entry", (t) => P.time(t.entry_t) + " @ " + P.num(t.entry_price)],
            ["exit", (t) => P.time(t.exit_t) + " @ " + P.num(t.exit_price)],
            ["PnL", (t) => '<span class="' + P.signClass(t.pnl) + '">' + P.num(t.pnl) + "</span>", "num"],
            ["PnL %", (t) => P.pct(t.pnl_pct), "num"],
            ["fees", (t) => P.num(t.fees, 4), "num"],
          ],
          null,
          "no closed trades",
        ),
      );
      if (el) el.dataset.count = String(trades.length);
    });
  };

  // -- health -------------------------------------------------------------------------------------
  P.renderHealth = function (h) {
    P.schedule("health", function () {
      const procs = Object.keys(h.processes).map((k) => Object.assign({ name: k }, h.processes[k]));
      P.setHtml(
        "processes-table",
        P.table(
          procs,
          [
            ["process", (p) => "<b>" + esc(p.name) + "</b>"],
            ["enabled", (p) => (p.enabled ? "yes" : "no")],
            ["state", (p) => '<span class="state state-' + esc(p.state) + '">' + esc(p.state) + "</span>"],
            ["detail", (p) => esc(p.detail)],
          ],
          (p) => 'data-testid="process-row-' + esc(p.name) + '" data-state="' + esc(p.state) + '"',
          "no processes",
        ),
      );
      let i = 0;
      P.setHtml(
        "streams-table",
        P.table(
          h.streams,
          [
            ["venue", (s) => esc(s.venue)],
            ["symbol", (s) => esc(s.symbol)],
            ["channel", (s) => esc(s.channel)],
            ["state", (s) => '<span class="state state-' + esc(s.state) + '">' + esc(s.state) + "</span>"],
            ["messages", (s) => esc(s.messages), "num"],
            ["lag ms", (s) => P.num(s.lag_ms, 0), "num"],
            ["gaps", (s) => esc(s.gaps), "num"],
            ["resyncs", (s) => esc(s.resyncs), "num"],
            ["reconnects", (s) => esc(s.reconnects), "num"],
            ["rate limited", (s) => esc(s.rate_limited), "num"],
            ["last error", (s) => esc(s.last_error || "")],
          ],
          () => 'data-testid="stream-row-' + i++ + '"',
          "no streams (a finished run has none)",
        ),
      );
      P.setHtml("errors-list", alertsHtml(h.errors || []));
    });
  };
})();
