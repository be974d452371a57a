/* The convoflow web chat page: plain JavaScript, no build step.
   Replies come from three places, shown once each by their seq: the answer to a post, the history
   (on load) and the event stream (timers, events, other tabs). A post is retried with the same id
   until the server has it (the id makes a retry a duplicate), so a restart loses nothing. */
(function () {
  "use strict";
  var base = new URL("./", document.currentScript ? document.currentScript.src : location.href);
  var query = new URLSearchParams(location.search);
  var user = query.get("user");
  var signature = query.get("signature");
  var storageKey = "convoflow-web:" + base.pathname + (user ? ":" + user : "");
  var log = document.getElementById("log");
  var form = document.getElementById("composer");
  var input = document.getElementById("text");
  var statusLine = document.getElementById("status");
  var token = localStorage.getItem(storageKey);
  var shown = {};
  var lastSeq = 0;
  var mine = {};
  var stream = null;
  var queue = Promise.resolve();
  var HELLO = "hello";  // the id of the message a first visit sends to begin, never shown

  function url(path) { return new URL(path, base).toString(); }
  function pause(ms) { return new Promise(function (done) { setTimeout(done, ms); }); }
  function say(text) { statusLine.textContent = text; }
  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function post(path, body) {
    return fetch(url(path), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  }

  async function obtainToken() {
    for (var attempt = 0; ; attempt++) {
      try {
        var body = token ? { token: token } : (user ? { user: user, signature: signature } : {});
        var response = await post("session", body);
        if (response.ok) {
          token = (await response.json()).token;
          localStorage.setItem(storageKey, token);
          return;
        }
        if (response.status === 401 && token) { token = null; continue; }  // expired: a new visitor
        if (response.status === 401) { say("This chat could not sign you in."); throw new Error("refused"); }
      } catch (error) {
        if (error.message === "refused") throw error;
      }
      say("Connecting…");
      await pause(Math.min(5000, 500 * (attempt + 1)));
    }
  }

  function bubble(kind, seq) {
    var element = document.createElement("div");
    element.className = "message " + kind;
    if (seq !== undefined) {
      element.dataset.seq = String(seq);
      var later = Array.prototype.find.call(log.querySelectorAll(".bot"), function (other) { return Number(other.dataset.seq) > seq; });
      if (later) { log.insertBefore(element, later); return element; }
    }
    log.appendChild(element);
    return element;
  }

  function showUser(text) {
    bubble("user").textContent = text;
    log.scrollTop = log.scrollHeight;
  }

  function render(reply) {
    if (shown[reply.seq]) return;
    shown[reply.seq] = true;
    lastSeq = Math.max(lastSeq, reply.seq);
    if (reply.said && !mine[reply.turn] && reply.turn !== HELLO) showUser(reply.said);
    var element = bubble("bot", reply.seq);
    if (reply.media === "image") {
      var image = document.createElement("img");
      image.src = reply.source;
      image.alt = reply.caption || "image";
      image.addEventListener("load", function () { log.scrollTop = log.scrollHeight; });
      element.appendChild(image);
      if (reply.caption) element.appendChild(document.createTextNode(reply.caption));
    } else if (reply.media) {
      var link = document.createElement("a");
      link.href = reply.source;
      link.textContent = reply.caption || "Download file";
      link.setAttribute("download", "");
      element.appendChild(link);
    } else {
      element.appendChild(document.createTextNode(reply.text));
    }
    if (reply.buttons && reply.buttons.length) {
      var choices = document.createElement("div");
      choices.className = "choices";
      choices.setAttribute("role", "group");
      choices.setAttribute("aria-label", "Choices");
      reply.buttons.forEach(function (option) {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = option.label;
        button.addEventListener("click", function () { send({ button: option.button }, option.label); input.focus(); });
        choices.appendChild(button);
      });
      element.appendChild(choices);
    }
    // only the latest question's buttons answer it: the older ones are shown, but disabled
    var groups = log.querySelectorAll(".choices");
    Array.prototype.forEach.call(groups, function (group, index) {
      Array.prototype.forEach.call(group.querySelectorAll("button"), function (button) { button.disabled = index < groups.length - 1; });
    });
    log.scrollTop = log.scrollHeight;
  }

  function send(payload, text, quiet, id) {
    var messageId = id || newId();
    mine[messageId] = true;
    if (!quiet) showUser(text);
    queue = queue.then(function () { return deliver(payload, messageId); });
    return queue;
  }

  async function deliver(payload, messageId) {
    for (var attempt = 0; ; attempt++) {
      try {
        var response = await post("messages", Object.assign({ token: token, id: messageId }, payload));
        if (response.ok) {
          (await response.json()).replies.forEach(render);
          say("");
          return;
        }
        if (response.status === 401) { await obtainToken(); continue; }
        if (response.status === 400) { say((await response.json()).error); return; }
        var wait = Number(response.headers.get("Retry-After")) * 1000;
        await pause(wait || Math.min(5000, 500 * (attempt + 1)));
      } catch (error) {
        say("Reconnecting…");
        await pause(Math.min(5000, 500 * (attempt + 1)));
      }
    }
  }

  async function loadHistory() {
    for (var attempt = 0; ; attempt++) {
      try {
        var response = await fetch(url("history?token=" + encodeURIComponent(token)));
        if (response.ok) return (await response.json()).replies;
        if (response.status === 401) await obtainToken();
      } catch (error) { say("Connecting…"); }
      await pause(Math.min(5000, 500 * (attempt + 1)));
    }
  }

  function follow() {
    if (stream) stream.close();
    stream = new EventSource(url("stream?token=" + encodeURIComponent(token) + "&after=" + lastSeq));
    stream.addEventListener("reply", function (event) { render(JSON.parse(event.data)); });
    stream.addEventListener("open", function () { say(""); });
    stream.addEventListener("error", function () {
      if (stream.readyState === EventSource.CLOSED) {  // refused (an expired token, say): start over
        say("Reconnecting…");
        setTimeout(function () { obtainToken().then(follow); }, 1000);
      } else {
        say("Reconnecting…");  // the browser retries by itself, resuming from the last event
      }
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    input.value = "";
    send({ text: text }, text);
  });

  (async function start() {
    await obtainToken();
    var replies = await loadHistory();
    replies.forEach(render);
    follow();
    if (!replies.length) send({ text: "/start" }, "", true, HELLO);  // a first visit: the bot begins
  })();
})();
