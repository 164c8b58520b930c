/* Flywheel console: keyboard triage on top of plain forms and htmx (progressive
   enhancement: without this file every action still works as a form POST).

   One cursor (the selected row), moved by the client only: an action swaps just
   its row (plus counters out of band). The cursor moves to the next open row as
   soon as the key is pressed — exactly once per action — while the acted row is
   marked as sending; the server's answer stays authoritative: a refused or failed
   action puts the cursor back on its row, which shows the error. Actions are sent
   one at a time in the order of the keys, so fast typing never skips or repeats. */
(function () {
  "use strict";

  var UNDO_MS = 10000;
  var LIST = "table[data-keyboard-list] tbody tr[data-id]";

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }
  function rows() { return Array.prototype.slice.call(document.querySelectorAll(LIST)); }
  // Open: still to decide, and no action on it in flight (class "sending").
  function isOpen(row) {
    return (row.classList.contains("st-pending") || row.classList.contains("st-apply_failed")) && !row.classList.contains("sending");
  }

  var selectedId = null;
  function selectedRow() { return selectedId ? document.getElementById("cand-" + selectedId) : null; }
  function select(row) {
    document.querySelectorAll("table[data-keyboard-list] tr.selected").forEach(function (r) {
      if (r !== row) r.classList.remove("selected");
    });
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
  // After a decision: the next open row below, else the nearest open one above.
  function advanceFrom(row) {
    var list = rows();
    var i = list.indexOf(row);
    for (var j = i + 1; j < list.length; j++) if (isOpen(list[j])) return select(list[j]);
    for (var k = i - 1; k >= 0; k--) if (isOpen(list[k])) return select(list[k]);
    select(row);
  }
  function toast(level, text) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var el = document.createElement("div");
    el.className = "toast " + level;
    el.setAttribute("role", "status");
    el.textContent = text;
    box.appendChild(el);
  }

  // --- one action at a time -----------------------------------------------------
  var busy = false, waiting = [];
  function run(task) {
    if (busy) { waiting.push(task); return; }
    busy = true;
    var done = function () {
      busy = false;
      var next = waiting.shift();
      if (next) run(next);
    };
    try { task().then(done, done); } catch (err) { done(); throw err; }
  }
  var ours = false;  // true while post() issues a request (it is already in the line)
  function post(url, target, values, source) {
    ours = true;
    try {
      return htmx.ajax("POST", url, {
        source: source || target, target: target, swap: "outerHTML settle:0ms", values: values || {}
      });
    } finally { ours = false; }
  }
  // A list reload (filter, tab, page, bulk) takes its place in the same line as the
  // row actions: one sent while an approval is in flight would otherwise answer with
  // the row as it was before the approval, or drop the approval's answer, whose row
  // it replaced. Only the latest reload still waiting is kept.
  var waitingReload = null;
  document.addEventListener("htmx:confirm", function (e) {
    var target = e.detail.target;
    if (ours || !target || target.id !== "queue-results") return;
    e.preventDefault();
    var reload = { issue: e.detail.issueRequest, elt: e.detail.elt };
    waitingReload = reload;
    run(function () {
      // The line runs in order: a newer reload still waits behind this one.
      if (waitingReload !== reload) return Promise.resolve();
      waitingReload = null;
      if (!document.body.contains(reload.elt)) {
        // A status tab replaced meanwhile (an action's answer updates the counts):
        // the same tab is clicked again, which queues its reload anew.
        var tab = reload.elt.dataset && reload.elt.dataset.status;
        var fresh = tab && document.querySelector('#status-tabs a[data-status="' + tab + '"]');
        if (fresh) fresh.click();
        return Promise.resolve();
      }
      return new Promise(function (resolve) {
        var xhr = null;
        var seen = function (ev) { xhr = ev.detail.xhr; };
        document.addEventListener("htmx:beforeSend", seen);
        // false: an hx-confirm question, had it one, is still asked (htmx:confirm is not)
        try { reload.issue(false); } finally { document.removeEventListener("htmx:beforeSend", seen); }
        if (!xhr) return resolve();  // not sent (its form left the page, or htmx dropped it)
        xhr.addEventListener("loadend", function () { resolve(); });
      });
    });
  });
  function sending(row, on) {
    row.classList.toggle("sending", on);
    if (on) row.setAttribute("aria-busy", "true"); else row.removeAttribute("aria-busy");
  }
  // A row action. On the selected open row the cursor moves on at once (optimistic);
  // the request is resolved by id when its turn comes: a row replaced meanwhile (the
  // list reloaded) is found again, one that left the list is said so — never a silent
  // no-op. Once the server has answered, a row still open (refused: 400/403, or not
  // swapped: 5xx, network) gets the cursor back; its toast says why.
  function rowAction(id, urlKey, values) {
    var acted = id && document.getElementById("cand-" + id);
    var moved = !!(acted && selectedId === id && isOpen(acted));
    if (moved) { sending(acted, true); advanceFrom(acted); }
    run(function () {
      var row = id && document.getElementById("cand-" + id);
      if (!row) {
        toast("error", id ? "Candidate #" + id + " is no longer in this list; nothing was sent." : "Select a candidate first (j / k).");
        return Promise.resolve();
      }
      var data = values || {};
      if (row.dataset.group) data.group = row.dataset.group;
      var answered = function () {
        var fresh = document.getElementById("cand-" + id);
        if (!fresh) return;
        sending(fresh, false);
        if (isOpen(fresh)) { if (moved || selectedId === id) select(fresh); }
        else if (!moved && selectedId === id) advanceFrom(fresh);
        else if (selectedId === id) fresh.classList.add("selected");
      };
      return post(row.dataset[urlKey], "#cand-" + id, data, row).then(answered, function (err) {
        answered();
        throw err;
      });
    });
  }

  // --- deny: a dialog with the namespace's canned reasons (1–9) and tags ----------
  var denyId = null;
  function guidance(ns) {
    var el = document.getElementById("fw-guidance");
    if (!el) return { reasons: [], tags: [] };
    try { return JSON.parse(el.textContent)[ns] || { reasons: [], tags: [] }; } catch (e) { return { reasons: [], tags: [] }; }
  }
  function askDeny(row) {
    var dialog = document.getElementById("deny-dialog");
    if (!row) { toast("warning", "Select a candidate first (j / k)."); return; }
    if (!dialog) return;
    denyId = row.dataset.id;
    dialog.querySelector("[data-deny-id]").textContent = "#" + denyId;
    var g = guidance(row.dataset.ns);
    var list = dialog.querySelector("[data-reasons]");
    list.textContent = "";
    g.reasons.slice(0, 9).forEach(function (r, i) {
      var li = document.createElement("li");
      li.dataset.reasonId = r.id;
      li.dataset.reasonTags = r.tags.join(",");
      li.innerHTML = "<kbd></kbd> <span></span>";
      li.querySelector("kbd").textContent = String(i + 1);
      li.querySelector("span").textContent = r.text;
      li.addEventListener("click", function () { pickReason(dialog.querySelector("form"), li); });
      list.appendChild(li);
    });
    var tags = dialog.querySelector("[data-tags]");
    tags.textContent = "";
    g.tags.forEach(function (t) {
      var label = document.createElement("label");
      label.className = "check";
      label.innerHTML = '<input type="checkbox" name="tags"> <span></span>';
      label.querySelector("input").value = t.slug;
      label.querySelector("span").textContent = t.label;
      tags.appendChild(label);
    });
    var reason = dialog.querySelector("textarea");
    reason.value = "";
    dialog.querySelector("input[name=reason]").value = "";
    dialog.showModal();
    reason.focus();
  }
  // A canned reason fills the text (still editable) and ticks its tags.
  function pickReason(form, item) {
    form.querySelectorAll("[data-reasons] li, [data-reasons] input[type=radio]").forEach(function (el) { el.classList && el.classList.remove("picked"); });
    var text, tags, id;
    if (item.matches("input[type=radio]")) {
      item.checked = true;
      text = item.dataset.reasonText; tags = item.dataset.reasonTags; id = item.value;
    } else {
      item.classList.add("picked");
      text = item.querySelector("span").textContent; tags = item.dataset.reasonTags; id = item.dataset.reasonId;
      form.querySelector("input[name=reason]").value = id;
    }
    var wanted = (tags || "").split(",");
    form.querySelectorAll("input[name=tags]").forEach(function (cb) { if (wanted.indexOf(cb.value) >= 0) cb.checked = true; });
    var area = form.querySelector("textarea");
    area.value = text;
    area.focus();
  }
  function reasonItems(form) {
    return Array.prototype.slice.call(form.querySelectorAll("[data-reasons] li[data-reason-id], [data-reasons] input[type=radio]"));
  }
  function denyValues(form) {
    var values = { note: form.querySelector("textarea").value.trim() };
    var reason = form.querySelector("input[name=reason]");
    var radio = form.querySelector("input[name=reason][type=radio]:checked");
    if (radio) values.reason = radio.value;
    else if (reason && reason.value) values.reason = reason.value;
    var tags = [];
    form.querySelectorAll("input[name=tags]:checked").forEach(function (cb) { tags.push(cb.value); });
    if (tags.length) values.tags = tags.join(",");
    return values;
  }
  function submitDenyDialog(form) {
    var values = denyValues(form);
    if (!values.note) { form.querySelector("textarea").focus(); return; }
    form.closest("dialog").close();
    rowAction(denyId, "denyUrl", values);
  }
  // In a reason box: Enter denies (Shift+Enter: a new line); a digit in an empty box
  // picks that canned reason.
  function reasonKeys(e) {
    var area = e.target;
    if (!area.matches || !area.matches("[data-deny-form] textarea")) return false;
    var form = area.closest("form");
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      if (form.method === "dialog") submitDenyDialog(form);
      else if (area.value.trim() || form.querySelector("input[name=reason]:checked")) submit(form);
      return true;
    }
    if (/^[1-9]$/.test(e.key) && !area.value) {
      var item = reasonItems(form)[parseInt(e.key, 10) - 1];
      if (item) { e.preventDefault(); pickReason(form, item); return true; }
    }
    return false;
  }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.matches) return;
    if (form.matches("[data-confirm]") && !window.confirm(form.dataset.confirm)) {
      e.preventDefault();
      e.stopImmediatePropagation();
      return;
    }
    if (form.matches("[data-deny-form]") && form.method === "dialog") {
      e.preventDefault();
      submitDenyDialog(form);
    }
  }, true);
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (!t.closest) return;
    if (t.closest("[data-close]")) { t.closest("dialog").close(); return; }
    if (t.closest("[data-help-toggle]")) { toggleHelp(); return; }
    var radio = t.closest("[data-deny-form] input[name=reason][type=radio]");
    if (radio) { pickReason(radio.closest("form"), radio); return; }
    var deny = t.closest("button[data-deny]");
    if (deny) { e.preventDefault(); var r = deny.closest("tr"); select(r); askDeny(r); return; }
    var act = t.closest("button[data-row-action]");
    if (act) { e.preventDefault(); var ar = act.closest("tr"); select(ar); rowAction(ar.dataset.id, act.dataset.rowAction); return; }
    if (t.closest("[data-open-edit]")) { e.preventDefault(); openEdit(); return; }
    var row = t.closest(LIST);
    if (row && !t.closest("a,button,input,summary,details")) select(row);
    var all = t.closest("[data-select-page]");
    if (all) {
      rows().forEach(function (r) { var cb = r.querySelector("input[name=ids]"); if (cb) cb.checked = all.checked; });
      updateCount();
    }
    if (t.matches("input[name=ids]")) updateCount();
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

  // --- undo ---------------------------------------------------------------------
  var lastDecision = null;
  document.addEventListener("fw:decided", function (e) {
    lastDecision = { ids: e.detail.ids || [], bulk: !!e.detail.bulk, at: Date.now() };
  });
  // Undo waits its turn like an action, so it undoes the last decision the server
  // made even when pressed while that decision is still in flight.
  function undo() {
    run(function () {
      if (!lastDecision || Date.now() - lastDecision.at > UNDO_MS) {
        toast("warning", "Nothing to undo (undo lasts " + UNDO_MS / 1000 + " s; reopen a candidate from its page).");
        return Promise.resolve();
      }
      var d = lastDecision;
      lastDecision = null;
      var form = document.querySelector("[data-undo]");
      var url = form ? form.getAttribute("action") : "/candidates/undo/";
      var page = candidatePage();
      var target = page ? "#candidate" : (d.ids.length === 1 && !d.bulk && document.getElementById("cand-" + d.ids[0]) ? "#cand-" + d.ids[0] : "#queue-results");
      return post(url, target, { ids: d.ids.join(",") }).then(function () {
        if (target.indexOf("#cand-") === 0) select(document.querySelector(target));
      });
    });
  }

  // Failed requests always say so (htmx would otherwise drop them silently).
  ["htmx:sendError", "htmx:responseError", "htmx:timeout", "htmx:sendAbort"].forEach(function (name) {
    document.addEventListener(name, function (e) {
      var xhr = e.detail && e.detail.xhr;
      var why = name === "htmx:responseError" && xhr ? "the server answered " + xhr.status : name === "htmx:sendAbort" ? "it was cancelled" : "the server could not be reached";
      var config = e.detail && e.detail.requestConfig;
      if (config && config.verb === "get") toast("error", "The list could not be loaded (" + why + "); try again.");
      else toast("error", "That action did not go through (" + why + "). Nothing was changed; try again.");
    });
  });

  // Toasts fade out.
  function watchToasts() {
    var box = document.getElementById("toasts");
    if (!box) return;
    var arm = function () {
      box.querySelectorAll(".toast:not([data-timed])").forEach(function (el) {
        el.dataset.timed = "1";
        setTimeout(function () { el.remove(); }, el.querySelector("[data-undo]") ? UNDO_MS : 6000);
      });
    };
    new MutationObserver(arm).observe(box, { childList: true });
    arm();
  }

  function candidatePage() { return document.querySelector("[data-page=candidate]"); }
  function submit(form) { if (form) { if (form.requestSubmit) form.requestSubmit(); else form.submit(); } }
  function openEdit() {
    var edit = document.getElementById("edit");
    if (!edit) return;
    edit.open = true;
    edit.scrollIntoView({ block: "start" });
    var f = edit.querySelector("textarea[name=content]") || edit.querySelector("textarea, select");
    if (f) f.focus();
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(e.target)) {
      if (reasonKeys(e)) return;
      if (e.key === "Escape") {
        // Chromium clears a search box on Esc, which would reload the list
        // unfiltered: Esc only leaves the field.
        e.preventDefault();
        e.target.blur();
      }
      return;
    }
    if (document.querySelector("dialog[open]") && e.key !== "?") return;
    var key = e.key;
    var page = candidatePage();
    if (key === "?") { e.preventDefault(); toggleHelp(); return; }
    if (key === "z") { e.preventDefault(); undo(); return; }
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
      else if (key === "e") { e.preventDefault(); openEdit(); }
      else if (key === "o") { var ev = document.getElementById("evidence"); if (ev) ev.scrollIntoView({ block: "start" }); }
      else if (key === "n" || key === "j") { var next = page.dataset.nextUrl; if (next) window.location.href = next; }
      else if (key === "Escape" || key === "u") { var back = document.querySelector(".crumbs a"); if (back) window.location.href = back.href; }
      return;
    }
    if (!rows().length) return;
    var row = selectedRow();
    var id = row ? row.dataset.id : null;
    if (key === "j" || key === "ArrowDown") { e.preventDefault(); move(1); }
    else if (key === "k" || key === "ArrowUp") { e.preventDefault(); move(-1); }
    else if (key === "a") { e.preventDefault(); rowAction(id, "approveUrl"); }
    else if (key === "d") { e.preventDefault(); askDeny(row); }
    else if (key === "c") { e.preventDefault(); rowAction(id, "conflictUrl"); }
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

  document.addEventListener("DOMContentLoaded", function () {
    watchToasts();
    if (location.hash === "#edit") { var edit = document.getElementById("edit"); if (edit) edit.open = true; }
    var first = rows().filter(isOpen)[0] || rows()[0];
    if (first && !selectedRow()) select(first);
  });
  // A reloaded list (filter, page, bulk decision) starts at its first open row.
  document.addEventListener("htmx:afterSettle", function () {
    if (!selectedRow()) { var first = rows().filter(isOpen)[0] || rows()[0]; if (first) select(first); }
    else selectedRow().classList.add("selected");
  });
})();
