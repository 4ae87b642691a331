// The report's editor: groups the shots into scenes from the embedded result, re-groups them as
// the threshold slider moves, merges and splits scenes, and saves the scenes as a result JSON of
// the schema `scenecut segment` writes (scenecut/output/formats.py, result_to_dict).
"use strict";
(() => {
  const data = JSON.parse(document.getElementById("scenecut-data").textContent);
  const doc = data.result;
  const shots = doc.shots;
  const scores = doc.boundary_scores;
  const settings = doc.settings;
  const chart = data.chart;
  const COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948"];
  const $ = (id) => document.getElementById(id);
  const main = $("scenes");
  const nav = $("timeline");
  const svg = $("chart");
  const slider = $("threshold");
  const player = $("player");
  const figures = [...main.querySelectorAll("figure.shot")];
  const dots = [...svg.querySelectorAll("circle.dot")];
  // Exact seconds of each shot's start and end as [numerator, denominator].
  const times = data.times.map((pair) => pair.map((t) => t.split("/").map(BigInt)));

  // A state is the gaps that are scene boundaries (gap i lies after shot i), the slider's
  // value, whether the scenes came from the slider, and whether they were edited by hand.
  const initial = {
    gaps: doc.scenes.slice(1).map((s) => s.first_shot - 1),
    threshold: settings.threshold,
    slider: false,
    edited: false,
  };
  let state = initial;
  const history = [];
  let sliding = false;
  const modeText = $("mode").textContent;

  // scenecut.result.pick_boundaries: strongest gaps first, above the threshold as float32,
  // keeping every scene at least min_scene_frames long.
  function pick(threshold) {
    if (shots.length < 2) return [];
    const limit = Math.fround(threshold);
    const order = scores.map((_, g) => g).sort((a, b) => scores[b] - scores[a] || a - b);
    const cuts = [shots[0].start_frame, shots[shots.length - 1].end_frame];
    const chosen = [];
    for (const gap of order) {
      if (!(Math.fround(scores[gap]) > limit)) break;
      const frame = shots[gap].end_frame;
      let left = -Infinity;
      let right = Infinity;
      for (const c of cuts) {
        if (c <= frame && c > left) left = c;
        if (c >= frame && c < right) right = c;
      }
      if (frame - left >= settings.min_scene_frames && right - frame >= settings.min_scene_frames) {
        chosen.push(gap);
        cuts.push(frame);
      }
    }
    return chosen.sort((a, b) => a - b);
  }

  // Milliseconds from one exact time to a later one, truncated like timecode.millis.
  function millis([n0, d0], [n1, d1]) {
    return ((n1 * d0 - n0 * d1) * 1000n) / (d0 * d1);
  }

  function secondsText(ms) {
    return `${ms / 1000n}.${String(ms % 1000n).padStart(3, "0")}`;
  }

  // The scenes of a list of boundary gaps, field for field as result_to_dict writes them.
  function scenesOf(gaps) {
    const out = [];
    let first = 0;
    for (const last of [...gaps, shots.length - 1]) {
      const a = shots[first];
      const b = shots[last];
      out.push({
        index: out.length,
        first_shot: first,
        last_shot: last,
        shots: Array.from({ length: last - first + 1 }, (_, i) => first + i),
        start_frame: a.start_frame,
        end_frame: b.end_frame,
        start_s: a.start_s,
        end_s: b.end_s,
        start_tc: a.start_tc,
        end_tc: b.end_tc,
        duration_s: Number(millis(times[first][0], times[last][1])) / 1000,
        score: first > 0 ? data.opening_scores[first - 1] : null,
      });
      first = last + 1;
    }
    return out;
  }

  function exportText() {
    if (state === initial) return JSON.stringify(doc, null, 2) + "\n";
    const out = { ...doc, scenes: scenesOf(state.gaps) };
    if (state.slider) out.settings = { ...settings, threshold: state.threshold, scenes: null };
    return JSON.stringify(out, null, 2) + "\n";
  }

  function renderTimeline(scenes) {
    const total = Number(millis(times[0][0], times[shots.length - 1][1])) || 1;
    nav.innerHTML = scenes
      .map((s) => {
        const share = (100 * Number(millis(times[s.first_shot][0], times[s.last_shot][1]))) / total;
        const n = s.index + 1;
        return (
          `<a class="cell" href="#scene-${n}" title="Scene ${n}: ${s.start_tc} - ${s.end_tc}" ` +
          `style="flex:${share.toFixed(4)} 1 0;background:${COLOURS[s.index % COLOURS.length]}">` +
          `<span>${n}</span></a>`
        );
      })
      .join("");
    thinLabels();
  }

  // Scene numbers are centred on their cells and may spill over narrow ones. The labels shown
  // are the multiples of the smallest step of 1, 2, 5, 10, 20, 50... whose labels all fit
  // the bar without touching each other: measure all, then hide the rest.
  function thinLabels() {
    const cells = [...nav.children];
    const bar = nav.getBoundingClientRect();
    const boxes = cells.map((c) => c.firstElementChild.getBoundingClientRect());
    let shown = new Set();
    for (const step of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]) {
      shown = new Set();
      let right = -Infinity;
      let fits = true;
      for (let i = step - 1; i < cells.length; i += step) {
        const box = boxes[i];
        if (box.left < bar.left || box.right > bar.right) continue; // clipped at an end
        if (box.left < right + 6) {
          fits = false;
          continue;
        }
        shown.add(i);
        right = box.right;
      }
      if (fits) break;
    }
    cells.forEach((c, i) => c.classList.toggle("bare", !shown.has(i)));
  }

  function renderScenes(scenes) {
    const sections = scenes.map((s) => {
      const n = s.index + 1;
      const count = s.last_shot - s.first_shot + 1;
      const ms = millis(times[s.first_shot][0], times[s.last_shot][1]);
      const score = s.score === null ? "" : ` · boundary score ${s.score.toFixed(2)}`;
      const merge =
        s.last_shot < shots.length - 1
          ? `<button type="button" class="merge" data-gap="${s.last_shot}" ` +
            `title="Merge scene ${n} with scene ${n + 1}">merge with next</button>`
          : "";
      const section = document.createElement("section");
      section.className = "scene";
      section.id = `scene-${n}`;
      section.dataset.scene = n;
      section.style.borderLeftColor = COLOURS[s.index % COLOURS.length];
      section.innerHTML =
        `<div class="scene-head"><h2>Scene ${n}</h2>${merge}</div>` +
        `<p class="when">${s.start_tc} – ${s.end_tc} · ${secondsText(ms)} s · ` +
        `${count} shot${count === 1 ? "" : "s"}${score} · ` +
        `frames ${s.start_frame}-${s.end_frame}</p><div class="shots"></div>`;
      section.lastElementChild.append(...figures.slice(s.first_shot, s.last_shot + 1));
      return section;
    });
    main.replaceChildren(...sections);
  }

  function renderChart() {
    const top = chart.top;
    const plotH = chart.height - chart.top - chart.bottom;
    const cuts = new Set(state.gaps);
    const r = svg.dataset.r;
    const cutR = svg.dataset.cutR;
    const lines = [];
    dots.forEach((dot, gap) => {
      const isCut = cuts.has(gap);
      dot.classList.toggle("cut-dot", isCut);
      dot.setAttribute("r", isCut ? cutR : r);
      if (isCut) {
        const x = dot.getAttribute("cx");
        lines.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + plotH}" class="cut"/>`);
      }
    });
    $("cuts").innerHTML = lines.join("");
    const showThreshold = settings.scenes === null || state.slider;
    const line = $("threshold-line");
    const y = (top + plotH * (1 - Math.min(1, Math.max(0, state.threshold)))).toFixed(1);
    line.setAttribute("y1", y);
    line.setAttribute("y2", y);
    line.classList.toggle("off", !showThreshold);
    $("threshold-legend").classList.toggle("off", !showThreshold);
    $("threshold-legend-value").textContent = String(state.threshold);
  }

  function render() {
    const scenes = scenesOf(state.gaps);
    renderTimeline(scenes);
    renderScenes(scenes);
    renderChart();
    $("scene-count").textContent = `${scenes.length} scene${scenes.length === 1 ? "" : "s"}`;
    const mode = state.slider ? `threshold ${state.threshold}` : modeText;
    $("mode").textContent = mode + (state.edited ? ", edited" : "");
    $("status").textContent = state === initial ? "" : "unsaved changes";
    $("threshold-value").textContent = String(state.threshold);
    $("undo").disabled = history.length === 0;
    $("reset").disabled = state === initial;
  }

  function change(next) {
    history.push(state);
    state = next;
    render();
  }

  function toggle(gap) {
    const gaps = new Set(state.gaps);
    if (!gaps.delete(gap)) gaps.add(gap);
    change({ ...state, gaps: [...gaps].sort((a, b) => a - b), edited: true });
  }

  slider.addEventListener("input", () => {
    // One drag is one undo step.
    if (!sliding) history.push(state);
    sliding = true;
    const threshold = Number(slider.value);
    state = { gaps: pick(threshold), threshold, slider: true, edited: false };
    render();
  });
  slider.addEventListener("change", () => {
    sliding = false;
  });
  slider.value = String(settings.threshold);

  main.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-gap]");
    if (button) {
      toggle(Number(button.dataset.gap));
      return;
    }
    const figure = event.target.closest("figure.shot");
    if (figure && player) {
      player.currentTime = parseFloat(figure.dataset.t);
      player.play();
      player.scrollIntoView({ behavior: "smooth", block: "nearest" });
    }
  });
  $("undo").addEventListener("click", () => {
    state = history.pop() ?? initial;
    slider.value = String(state.threshold);
    render();
  });
  $("reset").addEventListener("click", () => {
    slider.value = String(settings.threshold);
    change(initial);
  });
  $("save").addEventListener("click", () => {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([exportText()], { type: "application/json" }));
    link.download = data.name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    $("status").textContent = `saved ${data.name}`;
  });
  window.addEventListener("resize", thinLabels);

  // The JSON the Save button writes, for scripts and tests.
  window.scenecutExport = exportText;
  document.documentElement.classList.add("js");
  render();
})();
