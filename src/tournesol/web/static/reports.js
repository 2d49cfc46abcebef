/* Draws the charts of the report pages with Chart.js (static/vendor, no CDN).
 *
 * Each chart is a <canvas data-chart='{json}' role="img" aria-label="..."> inside a hidden
 * <figure>; the JSON (reporting/views.py: chart_view) gives:
 *   type    "bar", "line" or "band" (a line with its 95 % interval shaded between low and high)
 *   format  how values are written: count, money, rate (0-1), points (a difference of
 *           rates), ratio, p
 *   labels  the x values, as text; series [{label, data}] (null: no value)
 *   low, high, band   for a band: the interval's bounds and its legend
 * Numbers are written in the page's language (<html lang>). The figure is shown once drawn:
 * without JavaScript the page keeps its tables, which hold every figure of the charts. On the
 * dashboard, a table folded away once its chart is drawn stays one click away. */
(function () {
  "use strict";

  var lang = (document.documentElement.lang || "fr").slice(0, 2);
  var locale = lang === "fr" ? "fr-FR" : "en-GB";
  var COLOURS = ["#2b5cab", "#b35900", "#1a7f37", "#8250df", "#cf222e", "#0a7d8c"];
  var BAND = "rgba(43, 92, 171, 0.18)";
  var numbers = {};

  function numberFormat(options) {
    var key = JSON.stringify(options);
    if (!numbers[key]) numbers[key] = new Intl.NumberFormat(locale, options);
    return numbers[key];
  }

  /* A value as text; short: for an axis (no cents). */
  function format(kind, value, short) {
    if (value === null || value === undefined || isNaN(value)) return "—";
    switch (kind) {
      case "money":
        return numberFormat({
          style: "currency", currency: "EUR",
          minimumFractionDigits: short ? 0 : 2, maximumFractionDigits: short ? 0 : 2
        }).format(value);
      case "rate":
        return numberFormat({ style: "percent", maximumFractionDigits: 1 }).format(value);
      case "points":
        return (value > 0 ? "+" : "") +
          numberFormat({ maximumFractionDigits: 1 }).format(100 * value) + "\u00a0pts";
      case "ratio":
        return numberFormat({ maximumFractionDigits: 2 }).format(value);
      case "p":
        return value < 0.001 ? "< " + numberFormat({ maximumFractionDigits: 3 }).format(0.001)
          : numberFormat({ maximumFractionDigits: 3 }).format(value);
      default:
        return numberFormat({ maximumFractionDigits: short ? 1 : 0 }).format(value);
    }
  }

  function config(spec) {
    var kind = spec.format;
    var band = spec.type === "band";
    var datasets = [];
    if (band) {
      datasets.push({
        label: spec.band, data: spec.low, borderWidth: 0, pointRadius: 0, pointHitRadius: 0,
        fill: false, backgroundColor: BAND, spanGaps: true, order: 3, role: "low"
      });
      datasets.push({
        label: spec.band, data: spec.high, borderWidth: 0, pointRadius: 0, pointHitRadius: 0,
        fill: "-1", backgroundColor: BAND, spanGaps: true, order: 2, role: "high"
      });
    }
    spec.series.forEach(function (s, i) {
      var colour = COLOURS[i % COLOURS.length];
      datasets.push({
        label: s.label, data: s.data, borderColor: colour, backgroundColor: colour,
        borderWidth: spec.type === "bar" ? 0 : 2, pointRadius: spec.type === "bar" ? 0 : 3,
        spanGaps: true, fill: false, order: 1, maxBarThickness: 48
      });
    });
    var longest = spec.labels.reduce(function (m, l) { return Math.max(m, String(l).length); }, 0);
    var horizontal = spec.type === "bar" && longest > 14;
    var valueAxis = {
      ticks: { callback: function (v) { return format(kind, v, true); } },
      grid: {
        color: function (ctx) {
          return ctx.tick && ctx.tick.value === 0 ? "#59636e" : "rgba(0, 0, 0, 0.08)";
        }
      },
      beginAtZero: spec.type === "bar"
    };
    var labelAxis = { grid: { display: false }, ticks: { autoSkip: !horizontal } };
    return {
      type: spec.type === "bar" ? "bar" : "line",
      data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        indexAxis: horizontal ? "y" : "x",
        interaction: { mode: "index", intersect: false },
        scales: horizontal ? { x: valueAxis, y: labelAxis } : { x: labelAxis, y: valueAxis },
        plugins: {
          legend: {
            display: datasets.length > 1,
            labels: { filter: function (item, data) {
              return data.datasets[item.datasetIndex].role !== "low";
            } }
          },
          tooltip: {
            filter: function (item) { return item.dataset.role !== "low"; },
            callbacks: {
              label: function (item) {
                if (item.dataset.role === "high") {
                  var low = spec.low[item.dataIndex], high = spec.high[item.dataIndex];
                  return item.dataset.label + ": [" + format(kind, low) + " ; " +
                    format(kind, high) + "]";
                }
                var value = horizontal ? item.parsed.x : item.parsed.y;
                return item.dataset.label + ": " + format(kind, value);
              }
            }
          }
        }
      }
    };
  }

  function draw(canvas) {
    var spec;
    try {
      spec = JSON.parse(canvas.getAttribute("data-chart"));
    } catch (e) {
      return false;
    }
    var figure = canvas.closest("figure");
    if (figure) figure.hidden = false;
    try {
      new window.Chart(canvas, config(spec));
      canvas.setAttribute("data-drawn", "true");
      return true;
    } catch (e) {
      if (figure) figure.hidden = true;  // the table below still holds the figures
      return false;
    }
  }

  function start() {
    if (!window.Chart) return;
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    window.Chart.defaults.color = "#1f2328";
    document.querySelectorAll("canvas[data-chart]").forEach(draw);
    document.querySelectorAll("details[data-close-when-drawn]").forEach(function (details) {
      var section = details.closest("section") || details.parentElement;
      if (section && section.querySelector("canvas[data-drawn]")) details.open = false;
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
