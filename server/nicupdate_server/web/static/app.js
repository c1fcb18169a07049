// nicupdate web UI: the little that needs a script. Every page works without it.
// Copy buttons: <button data-copy="ID" hidden> copies the text of element ID.
"use strict";

(function () {
  var status = document.getElementById("copy-status");

  function say(text) {
    if (status) {
      status.textContent = "";
      window.setTimeout(function () { status.textContent = text; }, 50);
    }
  }

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copied(button) {
    var label = button.innerHTML;
    button.textContent = "Copied";
    button.setAttribute("data-copied", "true");
    say("Copied to the clipboard");
    window.setTimeout(function () {
      button.innerHTML = label;
      button.removeAttribute("data-copied");
    }, 2000);
  }

  function copy(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) {
      return;
    }
    var text = target.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { copied(button); },
        function () { selectText(target); say("Selected: press Ctrl+C to copy"); }
      );
    } else {
      selectText(target);
      if (document.execCommand && document.execCommand("copy")) {
        copied(button);
      } else {
        say("Selected: press Ctrl+C to copy");
      }
    }
  }

  var buttons = document.querySelectorAll("button[data-copy]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].hidden = false;
    buttons[i].addEventListener("click", function (event) { copy(event.currentTarget); });
  }
})();
