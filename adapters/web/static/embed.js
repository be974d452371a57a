/* <script src="https://YOUR-HOST/web/embed.js" async></script> puts the chat in a corner of any page.
   data-user and data-signature (HMAC-SHA256 of "user:" + id with CONVOFLOW_WEB_SECRET, hex) sign a
   logged-in user in; data-title names the frame for screen readers. */
(function () {
  var script = document.currentScript;
  if (!script) return;
  var src = new URL("./", script.src);
  if (script.dataset.user) {
    src.searchParams.set("user", script.dataset.user);
    src.searchParams.set("signature", script.dataset.signature || "");
  }
  var frame = document.createElement("iframe");
  frame.src = src.toString();
  frame.title = script.dataset.title || "Chat";
  frame.style.cssText = "position:fixed;right:16px;bottom:16px;width:360px;height:520px;max-width:calc(100vw - 32px);" +
    "max-height:calc(100vh - 32px);border:1px solid #c8ced6;border-radius:12px;background:#fff;z-index:2147483647";
  (document.body || document.documentElement).appendChild(frame);
})();
