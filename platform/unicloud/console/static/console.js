// Live views: follow an SSE stream and append lines to a <pre data-stream="...">.
(function () {
  function follow(pre, onEvent) {
    var source = new EventSource(pre.dataset.stream);
    onEvent(source);
    return source;
  }
  function append(pre, text) {
    var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(text + "\n"));
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  var logs = document.getElementById("logs");
  if (logs && logs.dataset.stream) {
    var state = document.getElementById("log-state");
    follow(logs, function (source) {
      source.onopen = function () { state.textContent = "live"; };
      source.onerror = function () { state.textContent = "reconnecting…"; };
      source.addEventListener("log", function (e) { append(logs, JSON.parse(e.data).text); });
    });
  }

  var buildLog = document.getElementById("build-log");
  if (buildLog && buildLog.dataset.stream) {
    buildLog.textContent = "";  // the stream replays the build from its first line
    follow(buildLog, function (source) {
      source.addEventListener("line", function (e) { append(buildLog, JSON.parse(e.data).line); });
      source.addEventListener("end", function (e) {
        var status = JSON.parse(e.data).status;
        var el = document.getElementById("build-status");
        el.textContent = status; el.className = "status-" + status;
        source.close();
      });
    });
  }
})();
