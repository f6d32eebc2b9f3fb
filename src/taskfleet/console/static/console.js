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
    el.textContent = ago(Math.max(0, Date.now() / 1000 - epoch));
    el.setAttribute("datetime", when.toISOString());
    el.title = when.toLocaleString();
  });
}

document.addEventListener("DOMContentLoaded", function () { showTimes(document); });
document.addEventListener("htmx:afterSwap", function (event) { showTimes(event.target); });
