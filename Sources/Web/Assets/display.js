// 대기실 현황판: shows the department's display as the server pushes it (server-sent events),
// blinks a new call, chimes and, where the browser can, reads it out. Names arrive masked.
(function () {
  "use strict";
  var body = document.body;
  var source = body.getAttribute("data-events");
  if (!source) return;
  var calling = document.getElementById("display-calling");
  var next = document.getElementById("display-next");
  var waiting = document.getElementById("display-waiting");
  var none = document.getElementById("display-none");
  var offline = document.getElementById("display-offline");
  var soundButton = document.getElementById("display-sound");
  var audio = null;
  var announced = {};

  soundButton.addEventListener("click", function () {
    // Browsers let a page make sound only after a gesture: one press when the TV is set up.
    var Context = window.AudioContext || window.webkitAudioContext;
    if (Context && !audio) audio = new Context();
    soundButton.hidden = true;
  });

  function chime() {
    if (!audio) return;
    [880, 660].forEach(function (frequency, i) {
      var oscillator = audio.createOscillator();
      var gain = audio.createGain();
      oscillator.frequency.value = frequency;
      oscillator.connect(gain);
      gain.connect(audio.destination);
      var start = audio.currentTime + i * 0.35;
      gain.gain.setValueAtTime(0.3, start);
      gain.gain.exponentialRampToValueAtTime(0.001, start + 0.3);
      oscillator.start(start);
      oscillator.stop(start + 0.32);
    });
  }

  function say(call) {
    if (!window.speechSynthesis || !window.SpeechSynthesisUtterance) return;
    var number = (call.queueNumber || "").replace("-", " ").replace(/\b0+(\d)/, "$1");
    var words = number + "번 " + call.name.replace(/\*/g, " ") + " 님, " + (call.room || "") + "로 오세요";
    var utterance = new SpeechSynthesisUtterance(words);
    utterance.lang = "ko-KR";
    window.speechSynthesis.speak(utterance);
  }

  function item(text, className) {
    var li = document.createElement("li");
    if (className) li.className = className;
    li.textContent = text;
    return li;
  }

  function show(display) {
    calling.replaceChildren();
    display.calling.forEach(function (call) {
      var key = (call.queueNumber || "") + "|" + call.calls + "|" + call.since;
      var li = item((call.queueNumber || "") + " " + call.name + " → " + (call.room || ""), "display-call");
      li.setAttribute("data-queue-number", call.queueNumber || "");
      if (!announced[key]) {
        announced[key] = true;
        li.classList.add("blink");
        chime();
        say(call);
      }
      calling.appendChild(li);
    });
    next.replaceChildren();
    display.next.forEach(function (entry) {
      next.appendChild(item((entry.queueNumber || "") + " " + entry.name));
    });
    waiting.textContent = String(display.waiting);
    none.hidden = display.waiting > 0;
  }

  // EventSource reconnects by itself, sending the last id it saw (Last-Event-ID): the server
  // then sends the display only if it changed meanwhile.
  var events = new EventSource(source);
  events.addEventListener("display", function (event) {
    offline.hidden = true;
    show(JSON.parse(event.data));
  });
  events.addEventListener("open", function () { offline.hidden = true; });
  events.addEventListener("error", function () { offline.hidden = false; });
})();
