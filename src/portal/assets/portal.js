// The portal works without this file: it only draws the charts (each beside its table, which has
// the same numbers) and moves focus after htmx swaps part of a page.
(function () {
  'use strict';
  var echartsLoading;

  function loadEcharts() {
    if (window.echarts) return Promise.resolve(window.echarts);
    if (!echartsLoading) {
      echartsLoading = new Promise(function (resolve, reject) {
        var script = document.createElement('script');
        script.src = '/assets/echarts.min.js';
        script.onload = function () { resolve(window.echarts); };
        script.onerror = reject;
        document.head.appendChild(script);
      });
    }
    return echartsLoading;
  }

  function tableRows(id) {
    var table = document.getElementById(id);
    if (!table) return [];
    return Array.prototype.map.call(table.tBodies[0].rows, function (row) {
      return Array.prototype.map.call(row.cells, function (cell) { return cell.textContent.trim(); });
    });
  }

  function number(text) { return Number(String(text).replace(/[^0-9.+-]/g, '')); }

  function drawBar(element, echarts) {
    var rows = tableRows(element.dataset.table);
    var chart = echarts.init(element, null, { renderer: 'svg' });
    chart.setOption({
      aria: { enabled: true },
      grid: { left: 100, right: 24, top: 8, bottom: 24 },
      xAxis: { type: 'value', minInterval: 1 },
      yAxis: { type: 'category', inverse: true, data: rows.map(function (r) { return r[0]; }), axisLabel: { width: 92, overflow: 'truncate' } },
      series: [{ type: 'bar', data: rows.map(function (r) { return number(r[1]); }), itemStyle: { color: '#0b5cad' } }],
      tooltip: { trigger: 'axis' },
    });
    return chart;
  }

  // Stacked bars over time: the table's first column is the step, the others (named by its header) the stacks.
  function drawSeries(element, echarts) {
    var table = document.getElementById(element.dataset.table);
    var names = table ? Array.prototype.slice.call(table.tHead.rows[0].cells, 1).map(function (cell) { return cell.textContent.trim(); }) : [];
    var rows = tableRows(element.dataset.table);
    var colors = ['#0b5cad', '#b35c00', '#b00020'];
    var chart = echarts.init(element, null, { renderer: 'svg' });
    chart.setOption({
      aria: { enabled: true },
      grid: { left: 56, right: 24, top: 32, bottom: 56 },
      legend: { top: 0 },
      tooltip: { trigger: 'axis' },
      xAxis: { type: 'category', data: rows.map(function (r) { return r[0]; }), axisLabel: { rotate: 30 } },
      yAxis: { type: 'value', minInterval: 1 },
      series: names.map(function (name, index) {
        return { name: name, type: 'bar', stack: 'all', data: rows.map(function (r) { return number(r[index + 1]); }), itemStyle: { color: colors[index % colors.length] } };
      }),
    });
    return chart;
  }

  function drawMap(element, echarts) {
    return fetch(element.dataset.geojson).then(function (response) {
      if (!response.ok) throw new Error('HTTP ' + response.status);
      return response.json();
    }).then(function (collection) {
      var points = collection.features.filter(function (f) { return f.geometry && f.geometry.type === 'Point'; }).map(function (f) {
        return { name: f.properties && (f.properties.name || f.id), value: f.geometry.coordinates };
      });
      var chart = echarts.init(element, null, { renderer: 'canvas' });
      chart.setOption({
        aria: { enabled: true },
        grid: { left: 56, right: 24, top: 16, bottom: 40 },
        xAxis: { type: 'value', scale: true, name: element.dataset.x || '', axisLabel: { formatter: '{value}°' } },
        yAxis: { type: 'value', scale: true, axisLabel: { formatter: '{value}°' } },
        tooltip: { formatter: function (p) { return p.data.name + '<br>' + p.data.value[0] + ', ' + p.data.value[1]; } },
        series: [{ type: 'scatter', symbolSize: 8, data: points, itemStyle: { color: '#0b5cad' } }],
      });
      return chart;
    });
  }

  function drawCharts(root) {
    var elements = root.querySelectorAll('[data-chart]:not([data-drawn])');
    if (!elements.length) return;
    loadEcharts().then(function (echarts) {
      elements.forEach(function (element) {
        element.setAttribute('data-drawn', '');
        element.hidden = false;
        var kind = element.dataset.chart;
        var drawn = kind === 'map' ? drawMap(element, echarts) : kind === 'series' ? drawSeries(element, echarts) : drawBar(element, echarts);
        Promise.resolve(drawn).then(function (chart) {
          window.addEventListener('resize', function () { chart.resize(); });
          // With the map drawn, its long table of points folds away (one click opens it again).
          var table = element.dataset.chart === 'map' && document.getElementById(element.dataset.table);
          var details = table && table.closest('details');
          if (details) details.open = false;
        }, function () { element.hidden = true; });
      });
    }, function () { /* no chart: the table is there */ });
  }

  document.addEventListener('DOMContentLoaded', function () { drawCharts(document); });
  document.addEventListener('htmx:afterSwap', function (event) {
    var target = event.detail.target;
    drawCharts(target);
    var status = target.querySelector('#grid-status, #grid-error, #results-title');
    if (status) {
      status.setAttribute('tabindex', '-1');
      status.focus();
    }
  });
})();
