(function () {
  "use strict";
  // Renders the run list from the JSON embedded in the page: no network, text only (never innerHTML).
  var STATUSES = ["ok", "warned", "refused", "failed", "running", "pending"];
  var PAGE = /^runs\/[A-Za-z0-9_-]+\.html$/;
  var data = JSON.parse(document.getElementById("run-data").textContent);
  var body = document.getElementById("run-rows");
  var search = document.getElementById("run-filter");
  var problems = document.getElementById("run-problems");
  var count = document.getElementById("run-count");

  function statusClass(status) {
    return "s-" + (STATUSES.indexOf(status) >= 0 ? status : "other");
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    if (text !== null && text !== undefined) { td.textContent = String(text); }
    tr.appendChild(td);
    return td;
  }
  function badge(parent, text, status) {
    var span = document.createElement("span");
    span.className = "badge " + statusClass(status);
    span.textContent = text;
    parent.appendChild(span);
  }
  function haystack(run) {
    var parts = [run.run_key, run.outcome, run.started, run.error || ""];
    run.datasets.forEach(function (d) { parts.push(d.name, d.status); });
    return parts.join(" ").toLowerCase();
  }
  function render() {
    var needle = (search.value || "").toLowerCase();
    var onlyProblems = problems.checked;
    while (body.firstChild) { body.removeChild(body.firstChild); }
    var shown = 0;
    data.runs.forEach(function (run) {
      if (needle && haystack(run).indexOf(needle) < 0) { return; }
      if (onlyProblems && run.status === "ok") { return; }
      var tr = document.createElement("tr");
      tr.className = "run-row";
      tr.setAttribute("data-run-key", run.run_key);
      cell(tr, run.started);
      badge(cell(tr, null), run.outcome, run.status);
      var ds = cell(tr, null);
      run.datasets.forEach(function (d) { badge(ds, d.label, d.status); ds.appendChild(document.createTextNode(" ")); });
      cell(tr, run.checks_failed + " / " + run.checks, "num");
      cell(tr, run.refused, "num");
      cell(tr, run.warned, "num");
      var link = cell(tr, null);
      if (run.page && PAGE.test(run.page)) {
        var a = document.createElement("a");
        a.href = run.page;
        a.textContent = run.run_key;
        link.appendChild(a);
      } else {
        link.textContent = run.run_key + " (no page)";
      }
      body.appendChild(tr);
      shown += 1;
    });
    count.textContent = shown + " of " + data.runs.length + " runs shown";
  }
  search.addEventListener("input", render);
  problems.addEventListener("change", render);
  document.getElementById("runs-js").hidden = false;
  render();
  document.documentElement.setAttribute("data-rendered", "js");
})();
