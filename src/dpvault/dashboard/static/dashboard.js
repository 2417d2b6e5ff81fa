// dpvault dashboard: refresh the page's <main> in place while it is open, so running jobs,
// new recovery points and failures show without a reload. Read-only GETs of this origin only.
"use strict";
(function () {
  const main = document.querySelector("main[data-live]");
  if (!main) return;
  const every = Math.max(500, Number(main.dataset.live) || 2000);
  let last = null;
  let busy = false;
  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const response = await fetch(location.pathname + location.search, {
        headers: { "X-Dpvault-Partial": "1" },
        credentials: "same-origin",
        cache: "no-store",
        redirect: "error",
      });
      if (response.status === 401) {
        location.reload(); // the session ended: show the sign-in page
        return;
      }
      if (response.ok) {
        const html = await response.text();
        if (html !== last) {
          last = html;
          main.innerHTML = html;
        }
        document.body.dataset.refreshed = String(Date.now());
      }
    } catch (_) {
      // the server is restarting or the network is down: the next tick tries again
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, every);
})();
