// voltstack console: the few behaviours that need script. No inline script
// anywhere (a strict Content-Security-Policy stays possible); pages carry
// their data in data- attributes. Without JavaScript every page still
// works: forms post, values show as rendered, the navigation stays open.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function setupNavigation() {
    var toggle = document.querySelector(".nav-toggle");
    var nav = document.getElementById("site-nav");
    if (!toggle || !nav) return;
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  function formatTime(iso) {
    var date = new Date(iso);
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function rowFor(tbody, obis, name) {
    var rows = tbody.querySelectorAll("tr[data-obis]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].dataset.obis === obis) return rows[i];
    }
    var empty = tbody.querySelector("tr.empty");
    if (empty) empty.remove();
    var row = document.createElement("tr");
    row.dataset.obis = obis;
    row.innerHTML = '<th scope="row"></th><td><code></code></td><td class="num" data-field="value"></td>' +
      '<td data-field="unit"></td><td data-field="at"><time></time></td>';
    row.querySelector("th").textContent = name || obis;
    row.querySelector("code").textContent = obis;
    tbody.appendChild(row);
    return row;
  }

  function showValue(tbody, value) {
    var row = rowFor(tbody, value.obis, value.name);
    row.querySelector('[data-field="value"]').textContent = value.text;
    row.querySelector('[data-field="unit"]').textContent = value.unit;
    var time = row.querySelector('[data-field="at"] time');
    time.setAttribute("datetime", value.at);
    time.textContent = formatTime(value.at);
    row.classList.remove("changed");
    void row.offsetWidth;  // restart the highlight
    row.classList.add("changed");
  }

  function setupLiveValues() {
    var table = document.querySelector("table[data-live-src]");
    if (!table || !window.EventSource) return;
    var status = document.getElementById("live-status");
    var tbody = table.querySelector("tbody");
    var source = new EventSource(table.dataset.liveSrc);
    function say(state, text) {
      if (!status) return;
      status.dataset.state = state;
      status.textContent = text;
    }
    source.addEventListener("open", function () { say("live", "Live: values update as readings arrive."); });
    source.addEventListener("values", function (event) {
      JSON.parse(event.data).forEach(function (value) { showValue(tbody, value); });
      say("live", "Live: updated " + formatTime(new Date().toISOString()) + ".");
      table.dataset.updates = String(Number(table.dataset.updates || "0") + 1);
    });
    source.addEventListener("end", function (event) {
      source.close();
      say("lost", JSON.parse(event.data));
    });
    source.addEventListener("error", function () {
      say("lost", "Live updates interrupted; reconnecting…");
    });
  }

  function setupChart() {
    var figure = document.getElementById("chart");
    var select = document.getElementById("quantity");
    if (!figure || !select || !window.uPlot) return;
    var caption = document.getElementById("chart-caption");
    var plot = null;

    function draw() {
      var option = select.options[select.selectedIndex];
      var end = new Date();
      var start = new Date(end.getTime() - 24 * 3600 * 1000);
      var url = figure.dataset.readingsApi + encodeURIComponent(option.value) +
        "?resolution=15m&aggregate=" + option.dataset.aggregate +
        "&start=" + encodeURIComponent(start.toISOString()) +
        "&end=" + encodeURIComponent(end.toISOString());
      caption.textContent = "Loading the chart…";
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("the readings API answered " + response.status);
          return response.json();
        })
        .then(function (series) {
          var unit = series.unit || option.dataset.unit || "";
          var times = series.points.map(function (p) { return Date.parse(p.at) / 1000; });
          var values = series.points.map(function (p) { return p.value; });
          if (plot) plot.destroy();
          var width = Math.max(figure.clientWidth, 280);
          plot = new uPlot({
            width: width,
            height: 260,
            scales: { x: { time: true } },
            axes: [
              { label: "time (your time zone)" },
              { label: unit, size: 70 }
            ],
            series: [
              {},
              { label: (option.dataset.name || option.value) + (unit ? " (" + unit + ")" : ""),
                stroke: "#0b5cad", width: 2, points: { show: values.length < 3 } }
            ]
          }, [times, values], figure);
          figure.dataset.points = String(values.length);
          figure.setAttribute("aria-label", (option.dataset.name || option.value) +
            " over the last 24 hours, " + values.length + " fifteen-minute points" +
            (values.length ? ", from " + Math.min.apply(null, values) + " to " +
              Math.max.apply(null, values) + " " + unit : ""));
          caption.textContent = values.length
            ? values.length + " points, 15-minute " + option.dataset.aggregate + ", in " + (unit || "no unit") + "."
            : "No readings in the last 24 hours.";
        })
        .catch(function (error) { caption.textContent = "The chart could not be loaded: " + error.message; });
    }
    select.addEventListener("change", draw);
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        if (plot) plot.setSize({ width: Math.max(figure.clientWidth, 280), height: 260 });
      }, 200);
    });
    draw();
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupNavigation();
    setupLiveValues();
    setupChart();
  });
})();
