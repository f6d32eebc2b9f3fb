// taskfleet console: small behaviours the pages declare with data- attributes.
// No inline script anywhere (the Content-Security-Policy forbids it).
"use strict";

// <form data-confirm="question">: ask before submitting (approve, revoke, apply...).
document.addEventListener("submit", function (event) {
  const form = event.target;
  const question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

// <time data-epoch="seconds">: "12 s ago", with the local date and time as a tooltip.
function ago(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " days ago";
}

function showTimes(root) {
  root.querySelectorAll("time[data-epoch]").forEach(function (el) {
    const epoch = parseFloat(el.getAttribute("data-epoch"));
    if (!isFinite(epoch)) return;
    const when = new Date(epoch * 1000);
    const past = Date.now() / 1000 - epoch;
    // A moment ahead (a window that opens, a run's expiry) reads "in 3 h"; a few
    // seconds' clock skew on a moment just past still reads "0 s ago".
    el.textContent = past < -5 ? "in " + ago(-past).replace(/ ago$/, "") : ago(Math.max(0, past));
    el.setAttribute("datetime", when.toISOString());
    el.title = when.toLocaleString();
  });
}

document.addEventListener("DOMContentLoaded", function () { showTimes(document); });
document.addEventListener("htmx:afterSwap", function (event) { showTimes(event.target); });

// [data-guard="question"]: unapplied changes on this page; ask before leaving it (R9).
let submitting = false;
document.addEventListener("submit", function () { submitting = true; });
document.addEventListener("click", function (event) {
  const guard = document.querySelector("[data-guard]");
  const link = event.target.closest && event.target.closest("a[href]");
  if (!guard || !link || link.target === "_blank") return;
  const to = new URL(link.href, window.location.href);
  if (to.pathname === window.location.pathname) return;
  if (!window.confirm(guard.getAttribute("data-guard"))) {
    event.preventDefault();
  } else {
    submitting = true;  // answered already: no second question from beforeunload
  }
});
window.addEventListener("beforeunload", function (event) {
  if (document.querySelector("[data-guard]") && !submitting) {
    event.preventDefault();
    event.returnValue = "";
  }
});

// ol[data-sortable]: drag a task server to reorder the list; the order is saved to the draft.
let dragged = null;
document.addEventListener("dragstart", function (event) {
  const item = event.target.closest && event.target.closest("ol[data-sortable] > li");
  if (!item) return;
  dragged = item;
  item.classList.add("dragging");
  event.dataTransfer.effectAllowed = "move";
  event.dataTransfer.setData("text/plain", item.getAttribute("data-ts"));
});
document.addEventListener("dragover", function (event) {
  const item = event.target.closest && event.target.closest("ol[data-sortable] > li");
  if (!dragged || !item || item.parentNode !== dragged.parentNode) return;
  event.preventDefault();
  const box = item.getBoundingClientRect();
  const after = event.clientY > box.top + box.height / 2;
  item.parentNode.insertBefore(dragged, after ? item.nextSibling : item);
});
document.addEventListener("dragend", function () {
  if (!dragged) return;
  const list = dragged.parentNode;
  dragged.classList.remove("dragging");
  dragged = null;
  const names = Array.from(list.children).map(function (li) { return li.getAttribute("data-ts"); });
  const form = list.parentNode.querySelector("form.order-form");
  const field = form && form.querySelector("input[name=order]");
  if (field && field.value !== names.join(",")) {
    field.value = names.join(",");
    form.submit();  // form.submit() fires no submit event: mark it ourselves
    submitting = true;
  }
});

// input[data-browser-zone]: a new form's time zone starts as the browser's own (an IANA
// name such as Europe/Berlin); the server's default, UTC, stays when the browser has none.
document.addEventListener("DOMContentLoaded", function () {
  let zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
  if (!zone) return;
  document.querySelectorAll("input[data-browser-zone]").forEach(function (el) { el.value = zone; });
});
