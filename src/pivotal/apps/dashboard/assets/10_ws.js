/* pivotal dashboard — the WebSocket client: auth by subprotocol, subscriptions, reconnect.
 *
 * new WebSocket(url, ["pivotal.v1", "bearer." + token]); on open it (re)subscribes the
 * selected node's channels; messages go to P.onMessage(msg). A close other than 4401/4403
 * (bad token / forged origin: shown, not retried) reconnects after 1, 2, 4 … 30 s. The
 * connection state is shown in #ws-state (data-state = connecting|open|retry|refused|closed).
 */
(function () {
  "use strict";
  const P = (window.Pivotal = window.Pivotal || {});
  const MAX_BACKOFF_MS = 30000;

  const ws = (P.ws = {
    socket: null,
    channels: [], // [{node, channels: [...]}] currently wanted
    attempt: 0,
    timer: null,
    stopped: true,
    state: "closed",
    pingTimer: null,
  });

  function setState(state, text) {
    ws.state = state;
    const el = P.$("ws-state");
    if (el) {
      el.dataset.state = state;
      el.textContent = text;
      el.className = "ws-state ws-" + state;
    }
  }

  function wsUrl() {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    return proto + "//" + window.location.host + P.state.api + "/ws";
  }

  function send(obj) {
    if (ws.socket && ws.socket.readyState === WebSocket.OPEN) {
      ws.socket.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  function subscribeAll() {
    for (const sub of ws.channels) send({ op: "subscribe", node: sub.node, channels: sub.channels });
  }

  function connect() {
    if (ws.stopped || !P.state.token) return;
    clearTimeout(ws.timer);
    setState("connecting", "connecting…");
    let socket;
    try {
      socket = new WebSocket(wsUrl(), ["pivotal.v1", "bearer." + P.state.token]);
    } catch (e) {
      return retry("could not open the WebSocket: " + e.message);
    }
    ws.socket = socket;
    socket.onopen = function () {
      if (ws.socket !== socket) return;
      ws.attempt = 0;
      setState("open", "live");
      subscribeAll();
      clearInterval(ws.pingTimer);
      ws.pingTimer = setInterval(() => send({ op: "ping" }), 20000);
      if (P.onReconnect) P.onReconnect();
    };
    socket.onmessage = function (ev) {
      if (ws.socket !== socket) return;
      P.stats.wsMessages += 1;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (e) {
        console.warn("pivotal: a WebSocket message that is not JSON", ev.data);
        return;
      }
      if (msg.type === "pong") return;
      if (msg.type === "error") {
        console.warn("pivotal: the server refused a message:", msg.detail);
        return;
      }
      if (P.onMessage) P.onMessage(msg);
    };
    socket.onclose = function (ev) {
      if (ws.socket !== socket) return;
      ws.socket = null;
      clearInterval(ws.pingTimer);
      if (ws.stopped) return setState("closed", "disconnected");
      if (ev.code === 4401 || ev.code === 4403) {
        const why = ev.code === 4401 ? "the token was refused" : "this origin was refused";
        setState("refused", "WebSocket refused (" + ev.code + "): " + (ev.reason || why));
        if (ev.code === 4401 && P.onUnauthorized) P.onUnauthorized(ev.reason || why);
        return;
      }
      retry("closed (" + ev.code + ")");
    };
  }

  function retry(why) {
    const delay = Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, ws.attempt));
    ws.attempt += 1;
    setState("retry", why + "; reconnecting in " + Math.round(delay / 1000) + " s");
    ws.timer = setTimeout(connect, delay);
  }

  /** Start (or restart) the connection. */
  ws.start = function () {
    ws.stopped = false;
    ws.attempt = 0;
    if (ws.socket) {
      const old = ws.socket;
      ws.socket = null;
      old.close(1000);
    }
    connect();
  };
  ws.stop = function () {
    ws.stopped = true;
    clearTimeout(ws.timer);
    clearInterval(ws.pingTimer);
    if (ws.socket) {
      const old = ws.socket;
      ws.socket = null;
      old.close(1000);
    }
    setState("closed", "disconnected");
  };
  /** Replace the wanted subscriptions: [{node, channels}]; sent now if open, else on open. */
  ws.setSubscriptions = function (subs) {
    for (const sub of ws.channels) send({ op: "unsubscribe", node: sub.node, channels: sub.channels });
    ws.channels = subs;
    subscribeAll();
  };
  ws.send = send;
})();
