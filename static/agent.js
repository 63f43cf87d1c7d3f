/* contact-gateway agent desktop: live pops over a WebSocket, fragments fetched from the server,
   keyboard shortcuts. No build step, no dependencies. */
(function () {
  "use strict";
  var desk = document.getElementById("desk");
  if (!desk) { return; }
  var agent = desk.dataset.agent;
  var csrf = desk.dataset.csrf;
  var popBox = document.getElementById("pop");
  var conn = document.getElementById("conn");
  var current = (popBox.querySelector("[data-pop]") || {}).dataset;
  var currentPop = current ? current.pop : null;
  var title = document.title;

  function setState(online) {
    if (!conn || !agent) { return; }
    var s = conn.querySelector(".state");
    if (s) { s.textContent = online ? conn.dataset.online : conn.dataset.offline; }
    conn.classList.toggle("online", online);
  }

  function loadLazy(root) {
    root.querySelectorAll("[data-load]").forEach(function (el) {
      fetchInto(el.dataset.load, el, false);
      el.removeAttribute("data-load");
    });
  }

  function fetchInto(url, target, append, options) {
    options = options || {};
    options.headers = Object.assign({"X-Requested-With": "fetch", "Accept": "text/html"}, options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options).then(function (r) {
      return r.text().then(function (html) {
        if (!r.ok && r.headers.get("Content-Type") && r.headers.get("Content-Type").indexOf("json") >= 0) {
          try { html = "<p class='error'>" + JSON.parse(html).detail + "</p>"; } catch (e) { /* keep text */ }
        }
        if (append) { target.insertAdjacentHTML("beforeend", html); } else { target.innerHTML = html; }
        loadLazy(target);
        var first = target.querySelector("[autofocus]");
        if (first) { first.focus(); }
        return r;
      });
    });
  }

  function showPop(pop) {
    if (!pop || pop.pop_id === currentPop) { return; }
    currentPop = pop.pop_id;
    var url = "/agent/pop?interaction_id=" + encodeURIComponent(pop.interaction_id || "");
    fetchInto(url, popBox, false).then(function () {
      var si = document.getElementById("search-interaction");
      if (si) { si.value = pop.interaction_id || ""; }
      popBox.classList.add("flash");
      setTimeout(function () { popBox.classList.remove("flash"); }, 1500);
      document.title = "☎ " + title;
      if (pop.state !== "identified") {
        var v = document.getElementById("search-value");
        if (v) { v.focus(); }
      }
    });
  }

  function callState(frame) {
    var el = document.getElementById("callstate");
    var card = popBox.querySelector("[data-interaction]");
    if (el && card && card.dataset.interaction === frame.interaction_id) {
      el.textContent = frame.label || frame.event;
      el.dataset.event = frame.event;
    }
  }

  var delay = 500;
  function connect() {
    if (!agent) { return; }
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(proto + location.host + "/v1/agents/" + encodeURIComponent(agent) + "/stream");
    ws.onopen = function () { setState(true); delay = 500; };
    ws.onmessage = function (m) {
      var frame;
      try { frame = JSON.parse(m.data); } catch (e) { return; }
      if (frame.type === "pop") { showPop(frame.pop); }
      else if (frame.type === "call") { callState(frame); }
      else if (frame.type === "pop.cleared") { document.title = title; }
    };
    ws.onclose = function () {
      setState(false);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  /* forms and links marked data-target: fetched, and the answer put in the target */
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.dataset || !form.dataset.target) { return; }
    ev.preventDefault();
    var target = document.querySelector(form.dataset.target);
    var data = new FormData(form);
    var method = (form.getAttribute("method") || "get").toUpperCase();
    if (method === "GET") {
      var q = new URLSearchParams(data).toString();
      fetchInto(form.action + (q ? "?" + q : ""), target, !!form.dataset.append).then(function () {
        if (form.dataset.append) { form.remove(); }
      });
    } else {
      fetchInto(form.action, target, false, {method: "POST", body: new URLSearchParams(data),
                                             headers: {"X-CSRF-Token": csrf}}).then(function () {
        if (form.action.indexOf("/wrapup") >= 0) { currentPop = null; document.title = title; }
      });
    }
  });
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[data-target]");
    if (!a) { return; }
    ev.preventDefault();
    fetchInto(a.getAttribute("href"), document.querySelector(a.dataset.target), false);
  });

  /* keyboard */
  document.addEventListener("keydown", function (ev) {
    var typing = /^(INPUT|TEXTAREA|SELECT)$/.test(ev.target.tagName);
    if (ev.key === "/" && !typing) {
      ev.preventDefault();
      document.getElementById("search-value").focus();
    } else if (ev.key === "Escape") {
      var dlg = document.querySelector(".reason-dialog");
      if (dlg) { dlg.remove(); }
      if (typing) { ev.target.blur(); }
    } else if (ev.altKey && /^[1-9]$/.test(ev.key)) {
      var b = popBox.querySelector("[data-candidate='" + ev.key + "']");
      if (b) { ev.preventDefault(); b.click(); }
    } else if (ev.altKey && (ev.key === "w" || ev.key === "W")) {
      var w = document.getElementById("wrapup-disposition");
      if (w) { ev.preventDefault(); w.focus(); }
    } else if (ev.altKey && (ev.key === "t" || ev.key === "T")) {
      var t = popBox.querySelector(".timeline-days");
      if (t) { ev.preventDefault(); t.focus(); }
    }
  });

  loadLazy(document);
  connect();
}());
