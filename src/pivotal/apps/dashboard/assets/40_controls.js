/* pivotal dashboard — controls: process toggles, threshold sliders, stop new entries, force
 * exit, the kill switch (a dialog where the user types KILL).
 *
 * Every control POSTs a command (admin token) and shows the CommandResult in
 * #command-result; the value shown afterwards is the one the API reports (Controls, from the
 * result, the REST answer or the WebSocket), never the one the user asked for. A slider sends
 * on release ("change"), not while dragged. All controls are disabled, with a note, on a
 * read-only node or once the API answered 403 (a viewer token).
 */
(function () {
  "use strict";
  const P = (window.Pivotal = window.Pivotal || {});
  const esc = P.esc;
  const PROCESSES = ["streams", "inference", "learning", "trading"];
  const SLIDERS = [
    ["buy", "buy_threshold", "buy threshold"],
    ["sell", "sell_threshold", "sell threshold"],
    ["min-confidence", "min_confidence", "min confidence"],
  ];
  const dragging = new Set();

  P.controlsLocked = function () {
    const n = P.state.node;
    const c = P.state.controls;
    return !n || n.read_only || (c && c.read_only) || P.state.viewer;
  };

  /** Build the controls panel for the selected node (values come with applyControls). */
  P.buildControls = function () {
    let h = '<div class="controls-grid"><fieldset><legend>Processes</legend>';
    for (const p of PROCESSES) {
      h +=
        '<label class="toggle"><input type="checkbox" id="toggle-' +
        p +
        '" data-testid="toggle-' +
        p +
        '" data-process="' +
        p +
        '"> ' +
        p +
        "</label>";
    }
    h +=
      '<label class="toggle"><input type="checkbox" id="toggle-entries" data-testid="toggle-entries"> stop new entries</label></fieldset>';
    h += "<fieldset><legend>Orchestrator</legend>";
    for (const s of SLIDERS) {
      h +=
        '<div class="slider"><label for="slider-' +
        s[0] +
        '">' +
        s[2] +
        '</label><input type="range" min="0" max="1" step="0.01" id="slider-' +
        s[0] +
        '" data-testid="slider-' +
        s[0] +
        '" data-field="' +
        s[1] +
        '">' +
        '<output id="value-' +
        s[0] +
        '" data-testid="value-' +
        s[0] +
        '">–</output>' +
        '<small>applied <span id="applied-' +
        s[0] +
        '" data-testid="applied-' +
        s[0] +
        '">–</span></small></div>';
    }
    h +=
      '</fieldset><fieldset><legend>Emergency</legend><button id="btn-kill" data-testid="btn-kill" class="danger big">Kill switch…</button><p class="hint">Cancels every order and sells everything; the node stops trading.</p></fieldset></div>';
    P.setHtml("controls-body", h);
    for (const p of PROCESSES) {
      P.$("toggle-" + p).addEventListener("change", (ev) =>
        command("process", { process: p, enabled: ev.target.checked }, ev.target),
      );
    }
    P.$("toggle-entries").addEventListener("change", (ev) =>
      command("entries", { stopped: ev.target.checked }, ev.target),
    );
    for (const s of SLIDERS) {
      const el = P.$("slider-" + s[0]);
      el.addEventListener("input", () => {
        dragging.add(s[0]);
        P.$("value-" + s[0]).textContent = Number(el.value).toFixed(2);
      });
      el.addEventListener("change", () => {
        dragging.delete(s[0]);
        const body = {};
        body[s[1]] = Number(el.value);
        command("thresholds", body, el);
      });
    }
    P.$("btn-kill").addEventListener("click", openKillDialog);
    buildKillDialog();
    P.applyControls(P.state.controls);
  };

  /** Show a Controls object (null: unknown yet). */
  P.applyControls = function (c) {
    if (c) P.state.controls = c;
    c = P.state.controls;
    const body = P.$("controls-body");
    if (!body || !P.$("btn-kill")) return;
    const locked = P.controlsLocked();
    for (const p of PROCESSES) {
      const el = P.$("toggle-" + p);
      if (c && c.processes && p in c.processes) el.checked = !!c.processes[p];
      el.disabled = locked || !c || !(c.processes && p in c.processes);
      el.dataset.applied = c && c.processes ? String(!!c.processes[p]) : "";
    }
    const entries = P.$("toggle-entries");
    if (c) entries.checked = !!c.entries_stopped;
    entries.disabled = locked || !c;
    entries.dataset.applied = c ? String(!!c.entries_stopped) : "";
    for (const s of SLIDERS) {
      const el = P.$("slider-" + s[0]);
      const v = c ? c[s[1]] : null;
      const known = v !== null && v !== undefined;
      if (known && !dragging.has(s[0])) {
        el.value = String(v);
        P.$("value-" + s[0]).textContent = Number(v).toFixed(2);
      }
      el.dataset.applied = known ? String(v) : "";
      P.$("applied-" + s[0]).textContent = known ? Number(v).toFixed(2) : "n/a";
      el.disabled = locked || !known;
    }
    const kill = P.$("btn-kill");
    kill.disabled = locked || !c || c.killed;
    kill.textContent = c && c.killed ? "Kill switch fired" : "Kill switch…";
    body.dataset.locked = String(!!locked);
    let note = "";
    if (P.state.node && (P.state.node.read_only || (c && c.read_only))) {
      note =
        "Read-only node (" +
        P.state.node.kind +
        ", " +
        P.state.node.status +
        "): a finished run takes no commands.";
    } else if (P.state.viewer) {
      note = "Read-only token: " + P.state.viewerDetail;
    } else if (c && c.killed) {
      note = "The kill switch has fired: the node is flat and takes no new entries.";
    }
    const noteEl = P.$("controls-note");
    noteEl.textContent = note;
    noteEl.dataset.locked = String(!!locked);
    for (const b of document.querySelectorAll("button.force-exit")) b.disabled = locked;
  };

  function showResult(kind, accepted, detail) {
    const el = P.$("command-result");
    if (!el) return;
    el.dataset.command = kind;
    el.dataset.accepted = String(accepted);
    el.className = "result " + (accepted ? "ok" : "refused");
    el.textContent = kind + ": " + (accepted ? "applied" : "refused") + (detail ? " — " + detail : "");
  }

  /** POST commands/<kind>; shows the result and the controls it reports. */
  async function command(kind, body, sourceEl) {
    if (!P.state.node) return null;
    if (sourceEl) sourceEl.disabled = true;
    let result = null;
    try {
      result = await P.api(P.nodePath("/commands/" + kind), { method: "POST", body: body });
      showResult(kind, result.accepted, result.detail);
      if (result.controls) P.applyControls(result.controls);
    } catch (e) {
      if (e.status === 403) {
        P.state.viewer = true;
        P.state.viewerDetail = e.detail;
      }
      showResult(kind, false, (e.status ? e.status + " " : "") + e.detail);
    } finally {
      P.applyControls(null); // re-enable per the (possibly new) state; restores refused values
    }
    return result;
  }
  P.command = command;

  // -- force exit (delegated: the positions table is redrawn at 1 Hz) ------------------------------
  document.addEventListener("click", (ev) => {
    const btn = ev.target.closest && ev.target.closest("button.force-exit");
    if (!btn || btn.disabled) return;
    command("force-exit", { symbol: btn.dataset.symbol }, btn);
  });

  // -- kill dialog --------------------------------------------------------------------------------
  function buildKillDialog() {
    P.setHtml(
      "kill-dialog-host",
      '<div id="kill-dialog" data-testid="kill-dialog" class="modal hidden" role="dialog" aria-modal="true" aria-labelledby="kill-title">' +
        '<div class="modal-box"><h3 id="kill-title">Fire the kill switch?</h3>' +
        "<p>Every open order is cancelled and every position sold at market; the node then takes no new entries. Type <b>KILL</b> to confirm.</p>" +
        '<input id="kill-confirm-input" data-testid="kill-confirm-input" autocomplete="off" placeholder="KILL">' +
        '<div class="row"><button id="kill-cancel" data-testid="kill-cancel">Cancel</button>' +
        '<button id="kill-confirm" data-testid="kill-confirm" class="danger" disabled>Fire the kill switch</button></div></div></div>',
    );
    const input = P.$("kill-confirm-input");
    input.addEventListener("input", () => (P.$("kill-confirm").disabled = input.value.trim() !== "KILL"));
    P.$("kill-cancel").addEventListener("click", closeKillDialog);
    P.$("kill-confirm").addEventListener("click", async () => {
      if (input.value.trim() !== "KILL") return;
      closeKillDialog();
      await command("kill", { confirm: true, reason: "dashboard kill switch" }, P.$("btn-kill"));
    });
  }
  function openKillDialog() {
    const d = P.$("kill-dialog");
    P.$("kill-confirm-input").value = "";
    P.$("kill-confirm").disabled = true;
    d.classList.remove("hidden");
    P.$("kill-confirm-input").focus();
  }
  function closeKillDialog() {
    P.$("kill-dialog").classList.add("hidden");
  }

  /**
   * Learn whether the token may send commands (GET /session: admin or viewer); a viewer
   * token locks the controls with a note saying why.
   */
  P.probeRole = async function () {
    if (!P.state.node || P.state.node.read_only) return;
    try {
      const who = await P.api("/session");
      if (who && who.role === "viewer") {
        P.state.viewer = true;
        P.state.viewerDetail = "a viewer token can watch but not steer: log in with the admin token";
        P.applyControls(null);
      }
    } catch (e) {
      /* the page's own 401 handling covers a token that stopped working */
    }
  };
})();
