/* A little progressive enhancement; every page works without it.
   - The error summary takes the focus, so a screen reader reads it first.
   - A checkbox with data-reveals shows the region it controls only while checked
     (the seriousness criteria of an adverse event); without script the region stays shown.
   - An input with data-suggest fetches suggestions into its datalist as you type. */
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var summary = document.getElementById("error-summary");
    if (summary) { summary.focus(); }

    document.querySelectorAll("[data-reveals]").forEach(function (box) {
      var region = document.getElementById(box.getAttribute("data-reveals"));
      if (!region) { return; }
      var sync = function () { region.hidden = !box.checked; box.setAttribute("aria-expanded", box.checked ? "true" : "false"); };
      box.addEventListener("change", sync);
      sync();
    });

    document.querySelectorAll("input[data-suggest]").forEach(function (input) {
      var list = document.getElementById(input.getAttribute("list"));
      var url = input.getAttribute("data-suggest");
      var timer = null, last = "";
      if (!list || !url) { return; }
      input.addEventListener("input", function () {
        var text = input.value.trim();
        clearTimeout(timer);
        if (text.length < 2 || text === last) { return; }
        timer = setTimeout(function () {
          last = text;
          fetch(url + "?q=" + encodeURIComponent(text), { credentials: "same-origin", headers: { "Accept": "application/json" } })
            .then(function (r) { return r.ok ? r.json() : []; })
            .then(function (terms) {
              list.innerHTML = "";
              terms.forEach(function (t) {
                var option = document.createElement("option");
                option.value = t.term;
                option.label = t.label || t.term;
                list.appendChild(option);
              });
            })
            .catch(function () { /* suggestions are a convenience; typing still works */ });
        }, 150);
      });
    });
  });
})();
