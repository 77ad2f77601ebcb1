// lakeloop UI: the little that is better done in the browser. Pages work without it.
(function () {
  "use strict";
  // "/" focuses the search box, as on many sites
  document.addEventListener("keydown", function (ev) {
    var box = document.getElementById("q") || document.getElementById("quick-search");
    var t = ev.target && ev.target.tagName;
    if (ev.key === "/" && box && t !== "INPUT" && t !== "TEXTAREA" && t !== "SELECT") {
      ev.preventDefault();
      box.focus();
    }
  });
  // click a header of a table.sortable to sort its rows (numbers by data-v when present)
  function cellValue(row, i) {
    var cell = row.children[i];
    if (!cell) return "";
    var v = cell.getAttribute("data-v");
    if (v !== null && v !== "" && !isNaN(Number(v))) return Number(v);
    return cell.textContent.trim().toLowerCase();
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var heads = table.querySelectorAll("thead th");
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
        rows.sort(function (a, b) {
          var x = cellValue(a, i), y = cellValue(b, i);
          return (x < y ? -1 : x > y ? 1 : 0) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
