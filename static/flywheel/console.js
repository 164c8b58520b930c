/* Flywheel console: keyboard triage on top of plain forms and htmx (progressive
   enhancement: without this file every action still works as a form POST). */
(function () {
  "use strict";

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }
  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("table[data-keyboard-list] tbody tr[data-id]"));
  }
  var selectedId = null;
  function selectedRow() {
    return selectedId ? document.getElementById("cand-" + selectedId) : null;
  }
  function select(row) {
    rows().forEach(function (r) { r.classList.remove("selected"); });
    if (!row) { selectedId = null; return; }
    row.classList.add("selected");
    selectedId = row.dataset.id;
    row.scrollIntoView({ block: "nearest" });
  }
  function move(delta) {
    var list = rows();
    if (!list.length) return;
    var i = list.indexOf(selectedRow());
    i = i < 0 ? (delta > 0 ? 0 : list.length - 1) : Math.min(Math.max(i + delta, 0), list.length - 1);
    select(list[i]);
  }
  function toast(level, text) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast " + level;
    el.textContent = text;
    box.appendChild(el);
  }
  function rowAction(row, urlKey, values) {
    if (!row) { toast("warning", "Select a candidate first (j / k)."); return; }
    row.dataset.advance = "1";
    htmx.ajax("POST", row.dataset[urlKey], {
      source: row, target: "#" + row.id, swap: "outerHTML", values: values || {}
    });
  }

  // Deny asks for a reason: a small dialog, then a POST to the row's deny URL.
  var denyRow = null;
  function askDeny(row) {
    var dialog = document.getElementById("deny-dialog");
    if (!row || !dialog) { if (!row) toast("warning", "Select a candidate first (j / k)."); return; }
    denyRow = row;
    dialog.querySelector("[data-deny-id]").textContent = "#" + row.dataset.id;
    var reason = dialog.querySelector("textarea");
    reason.value = "";
    dialog.showModal();
    reason.focus();
  }
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.matches && form.matches("[data-deny-form]") && form.method === "dialog") {
      var note = form.querySelector("textarea").value.trim();
      if (!note) { e.preventDefault(); return; }
      rowAction(denyRow, "denyUrl", { note: note });
    }
  });
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t.closest && t.closest("[data-close]")) { t.closest("dialog").close(); return; }
    if (t.closest && t.closest("[data-help-toggle]")) { toggleHelp(); return; }
    var deny = t.closest && t.closest("button[data-deny]");
    if (deny) { e.preventDefault(); askDeny(deny.closest("tr")); return; }
    var row = t.closest && t.closest("table[data-keyboard-list] tbody tr[data-id]");
    if (row && !t.closest("a,button,input")) select(row);
    var all = t.closest && t.closest("[data-select-page]");
    if (all) {
      rows().forEach(function (r) { var cb = r.querySelector("input[name=ids]"); if (cb) cb.checked = all.checked; });
      updateCount();
    }
    if (t.matches && t.matches("input[name=ids]")) updateCount();
  });
  function updateCount() {
    var n = document.querySelectorAll("input[name=ids]:checked").length;
    var el = document.querySelector("[data-selected-count]");
    if (el) el.textContent = n ? n + " selected" : "";
  }
  function toggleHelp() {
    var help = document.getElementById("help");
    if (!help) return;
    if (help.open) help.close(); else help.showModal();
  }

  // After a row was replaced by an action, keep the selection and move on.
  document.addEventListener("htmx:afterSwap", function (e) {
    var row = selectedId && document.getElementById("cand-" + selectedId);
    if (row && e.detail.target && e.detail.target.id === row.id) {
      row.classList.add("selected");
    }
    if (row && e.detail.requestConfig && e.detail.requestConfig.elt &&
        e.detail.requestConfig.elt.dataset && e.detail.requestConfig.elt.dataset.advance) {
      move(1);
    }
  });
  // Toasts fade out.
  new MutationObserver(function () {
    document.querySelectorAll("#toasts .toast:not([data-timed])").forEach(function (el) {
      el.dataset.timed = "1";
      setTimeout(function () { el.remove(); }, 6000);
    });
  }).observe(document.documentElement, { childList: true, subtree: true });

  function candidatePage() { return document.querySelector("[data-page=candidate]"); }
  function submit(form) { if (form) { if (form.requestSubmit) form.requestSubmit(); else form.submit(); } }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(e.target)) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    if (document.querySelector("dialog[open]") && e.key !== "?") return;
    var key = e.key;
    var page = candidatePage();
    if (key === "?") { e.preventDefault(); toggleHelp(); return; }
    if (key === "/") {
      var search = document.querySelector(".filters input[type=search]");
      if (search) { e.preventDefault(); search.focus(); }
      return;
    }
    if (page) {
      if (key === "a") { e.preventDefault(); submit(page.querySelector("[data-approve-form]")); }
      else if (key === "d") {
        e.preventDefault();
        var reason = page.querySelector("[data-deny-form] textarea");
        if (reason) { reason.focus(); reason.scrollIntoView({ block: "center" }); }
      }
      else if (key === "c") { e.preventDefault(); submit(page.querySelector("[data-conflict-form]")); }
      else if (key === "e") {
        var edit = document.getElementById("edit");
        if (edit) { e.preventDefault(); edit.open = true; edit.scrollIntoView({ block: "start" }); var f = edit.querySelector("textarea"); if (f) f.focus(); }
      }
      else if (key === "o") { var ev = document.getElementById("evidence"); if (ev) ev.scrollIntoView({ block: "start" }); }
      else if (key === "n" || key === "j") { var next = page.dataset.nextUrl; if (next) window.location.href = next; }
      else if (key === "Escape" || key === "u") { var back = document.querySelector(".crumbs a"); if (back) window.location.href = back.href; }
      return;
    }
    if (!rows().length) return;
    var row = selectedRow();
    if (key === "j" || key === "ArrowDown") { e.preventDefault(); move(1); }
    else if (key === "k" || key === "ArrowUp") { e.preventDefault(); move(-1); }
    else if (key === "a") { e.preventDefault(); rowAction(row, "approveUrl"); }
    else if (key === "d") { e.preventDefault(); askDeny(row); }
    else if (key === "c") { e.preventDefault(); rowAction(row, "conflictUrl"); }
    else if (key === "x" && row) {
      var cb = row.querySelector("input[name=ids]"); if (cb) { cb.checked = !cb.checked; updateCount(); }
    }
    else if ((key === "o" || key === "Enter") && row) { window.location.href = row.dataset.openUrl + "#evidence"; }
    else if (key === "e" && row) { window.location.href = row.dataset.openUrl + "#edit"; }
  });

  // Leaving a candidate gives its lease back at once (it would expire anyway).
  window.addEventListener("pagehide", function () {
    var mine = document.querySelector("[data-lease-mine] form");
    if (!mine || !navigator.sendBeacon) return;
    navigator.sendBeacon(mine.action, new FormData(mine));
  });

  // Opening a candidate at #edit unfolds the edit form.
  document.addEventListener("DOMContentLoaded", function () {
    if (location.hash === "#edit") { var edit = document.getElementById("edit"); if (edit) edit.open = true; }
    var first = rows()[0];
    if (first && !selectedRow()) select(first);
  });
  document.addEventListener("htmx:afterSettle", function () {
    if (!selectedRow()) { var first = rows()[0]; if (first) select(first); }
  });
})();
