/* pivotal dashboard — the small figures: the order book heatmap (signed depth: bids +,
 * asks −, over time × price) with the mid price, the imbalance moving averages, and equity
 * with drawdown. They are redrawn with Plotly.react (a few thousand points at most), only
 * while on screen.
 */
(function () {
  "use strict";
  const P = (window.Pivotal = window.Pivotal || {});

  // -- small figures (Plotly.react is fine for these) ----------------------------------------
  function visible(el) {
    const r = el.getBoundingClientRect();
    return r.bottom > -200 && r.top < window.innerHeight + 200;
  }

  P.drawCob = function (cob) {
    const heat = P.$("chart-cob");
    const imb = P.$("chart-imbalance");
    if (!heat || !imb || !window.Plotly) return;
    heat.dataset.rows = String(cob.t.length);
    if (!cob.t.length) {
      if (!heat.dataset.drawn) {
        const msg = '<p class="empty">no order book recorded for ' + P.esc(cob.symbol) + "</p>";
        heat.innerHTML = msg;
        imb.innerHTML = "";
      }
      return;
    }
    if (heat.dataset.drawn && !visible(heat)) return;
    const t0 = performance.now();
    if (!heat.dataset.drawn) {
      heat.innerHTML = "";
      imb.innerHTML = "";
    }
    const z = cob.bids.map((row, i) => row.map((b, j) => b - ((cob.asks[i] || [])[j] || 0)));
    const layout = P.chartLayout("order book " + cob.symbol + " (bids +, asks −)", 260);
    window.Plotly.react(
      heat,
      [
        {
          type: "heatmap",
          x: cob.t,
          y: cob.prices,
          z: z,
          transpose: true,
          colorscale: "RdBu",
          zmid: 0,
          showscale: false,
        },
        {
          type: "scatter",
          mode: "lines",
          x: cob.t,
          y: cob.mid,
          line: { color: "#000", width: 1 },
          name: "mid",
        },
      ],
      layout,
      P.PLOT_CONFIG,
    );
    const lines = Object.keys(cob.imbalance).map((w) => ({
      type: "scatter",
      mode: "lines",
      name: w,
      x: cob.t,
      y: cob.imbalance[w],
    }));
    const il = P.chartLayout("imbalance moving averages", 200);
    il.showlegend = true;
    il.legend = { orientation: "h", y: 1.15 };
    window.Plotly.react(imb, lines, il, P.PLOT_CONFIG);
    P.stats.react += 2;
    P.stats.smallDrawMs += performance.now() - t0;
    heat.dataset.drawn = "1";
  };

  P.drawEquity = function (eq) {
    const el = P.$("chart-equity");
    if (!el || !window.Plotly) return;
    el.dataset.points = String(eq.t.length);
    if (el.dataset.drawn && !visible(el)) return;
    const t0 = performance.now();
    const layout = P.chartLayout("equity and drawdown", 240);
    layout.yaxis = { domain: [0.34, 1], title: { text: "equity" } };
    layout.yaxis2 = { domain: [0, 0.28], anchor: "x", title: { text: "drawdown %" }, autorange: "reversed" };
    window.Plotly.react(
      el,
      [
        { type: "scatter", mode: "lines", name: "equity", x: eq.t, y: eq.equity, line: { color: "#1f77b4" } },
        {
          type: "scatter",
          mode: "lines",
          name: "drawdown %",
          x: eq.t,
          y: eq.drawdown_pct,
          yaxis: "y2",
          fill: "tozeroy",
          line: { color: "#d62728", width: 1 },
          opacity: 0.4,
        },
      ],
      layout,
      P.PLOT_CONFIG,
    );
    P.stats.react += 1;
    P.stats.smallDrawMs += performance.now() - t0;
    el.dataset.drawn = "1";
  };
})();
