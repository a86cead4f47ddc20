// tidemark console: progressive enhancement only (every page works without it).
// 1. A section with data-refresh="N" is fetched again every N seconds (the page's address
//    with part=<its id>) and replaced in place; the request says it is a refresh, which
//    does not keep the session alive.
// 2. A field with data-confirm="NAME" keeps its form's button disabled until NAME is typed
//    (the server checks the name again).
"use strict";

function refresh(section) {
  const seconds = Number(section.dataset.refresh);
  if (!section.id || !(seconds > 0)) return;
  setTimeout(async () => {
    try {
      const url = new URL(location.href);
      url.searchParams.set("part", section.id); // a page may read only what this section needs
      const answer = await fetch(url, { headers: { "x-tidemark-refresh": "1" }, credentials: "same-origin", redirect: "manual" });
      if (answer.type === "opaqueredirect" || answer.status === 401) {
        location.reload(); // the session ended: the page says so, and offers sign-in
        return;
      }
      if (answer.ok) {
        const page = new DOMParser().parseFromString(await answer.text(), "text/html");
        const fresh = page.getElementById(section.id);
        const focused = document.activeElement && section.contains(document.activeElement);
        if (fresh && !focused) {
          section.replaceWith(fresh);
          enhance(fresh);
          return;
        }
      }
    } catch (e) { /* the next refresh tries again */ }
    refresh(section);
  }, seconds * 1000);
}

function confirmTyped(field) {
  const button = field.form && field.form.querySelector("button[type=submit]");
  if (!button) return;
  const check = () => { button.disabled = field.value.trim() !== field.dataset.confirm; };
  field.addEventListener("input", check);
  check();
}

function enhance(root) {
  if (root.dataset && root.dataset.refresh) refresh(root);
  root.querySelectorAll("[data-refresh]").forEach(refresh);
  root.querySelectorAll("[data-confirm]").forEach(confirmTyped);
}

document.addEventListener("DOMContentLoaded", () => enhance(document));
