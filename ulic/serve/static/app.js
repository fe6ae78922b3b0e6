// ulic serve: upload an image, follow the job's progress, show and compare the result.
"use strict";
const $ = (id) => document.getElementById(id);
let config = { max_upload_bytes: Infinity, max_pixels: Infinity };
let file = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function chooseFile(f) {
  file = f || null;
  $("drop-text").textContent = file ? `${file.name} (${(file.size / 1024).toFixed(0)} kB)` :
    "Drop an image here, or click to choose one";
  $("run").disabled = !file;
  showError("");
}

function formData() {
  const fd = new FormData();
  fd.append("file", file, file.name);
  for (const key of ["target", "value", "decoder", "steps"]) fd.append(key, $(key).value);
  fd.append("realism", $("realism-default").checked ? "" : $("realism").value);
  fd.append("lpips", $("lpips").checked ? "1" : "0");
  return fd;
}

async function errorOf(response) {
  try {
    return (await response.json()).error || response.statusText;
  } catch (e) {
    if (response.status === 413) return `the upload is larger than this server's limit of ${mb(config.max_upload_bytes)}`;
    return `${response.status} ${response.statusText}`;
  }
}

const mb = (n) => `${(n / 2 ** 20).toFixed(0)} MB`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const fixed = (x, digits) => (x === null || x === undefined ? "n/a" : x.toFixed(digits));

function setBusy(busy, stage, fraction) {
  $("status").hidden = !busy;
  $("run").disabled = busy || !file;
  $("stage").textContent = stage || "";
  if (fraction === null) $("progress").removeAttribute("value");
  else $("progress").value = fraction;
}

async function run(event) {
  event.preventDefault();
  if (!file) return;
  showError("");
  if (file.size > config.max_upload_bytes) {
    showError(`${file.name} is ${mb(file.size)}; this server takes uploads up to ${mb(config.max_upload_bytes)}`);
    return;
  }
  setBusy(true, "uploading…", null);
  try {
    const response = await fetch("/api/jobs", { method: "POST", body: formData() });
    if (!response.ok) throw new Error(await errorOf(response));
    const job = await follow((await response.json()).status);
    show(job);
  } catch (e) {
    showError(e.message);
  } finally {
    setBusy(false);
  }
}

async function follow(url) {
  const start = performance.now();
  for (;;) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(await errorOf(response));
    const job = await response.json();
    if (job.state === "done") return job;
    if (job.state === "failed") throw new Error(job.error);
    const seconds = ((performance.now() - start) / 1000).toFixed(0);
    setBusy(true, `${job.stage}… ${seconds} s`, job.progress || null);
    await sleep(300);
  }
}

function show(job) {
  const r = job.result;
  const stem = job.name.replace(/\.[^.]*$/, "") || "image";
  $("bytes").textContent = r.bytes;
  $("bpp").textContent = fixed(r.bpp, 4);
  $("psnr").textContent = fixed(r.psnr, 2);
  $("lpips-value").textContent = fixed(r.lpips, 4);
  $("size").textContent = `${r.width}×${r.height}`;
  $("used-decoder").textContent = r.decoder + (r.steps ? `, ${r.steps} steps` : "");
  $("encode-s").textContent = fixed(r.seconds.encode, 2);
  $("decode-s").textContent = fixed(r.seconds.decode, 2);
  $("notices").textContent = r.notices.join("; ");
  $("original").src = r.files["original.png"];
  $("decoded").src = r.files["decoded.png"];
  $("dl-ulic").href = r.files["image.ulic"];
  $("dl-ulic").download = `${stem}.ulic`;
  $("dl-png").href = r.files["decoded.png"];
  $("dl-png").download = `${stem}.ulic.png`;
  $("results").hidden = false;
}

function toggle(on, off, cls, other) {
  $(on).classList.add("on");
  $(off).classList.remove("on");
  $("compare").classList.add(cls);
  $("compare").classList.remove(other);
}

function wire() {
  $("form").addEventListener("submit", run);
  $("file").addEventListener("change", () => chooseFile($("file").files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    chooseFile(e.dataTransfer.files[0]);
  });
  $("decoder").addEventListener("change", () => { $("steps").disabled = $("decoder").value === "fast" || $("decoder").value === "mse"; });
  $("realism-default").addEventListener("change", () => {
    $("realism").disabled = $("realism-default").checked;
    $("realism-value").textContent = $("realism-default").checked ? "" : $("realism").value;
  });
  $("realism").addEventListener("input", () => { $("realism-value").textContent = $("realism").value; });
  $("target").addEventListener("change", () => {
    $("value").value = { bpp: "0.03", bytes: "1000", quality: "50" }[$("target").value];
  });
  $("split").addEventListener("input", () => $("view").style.setProperty("--split", `${$("split").value}%`));
  $("mode-slider").addEventListener("click", () => toggle("mode-slider", "mode-side", "slider", "side"));
  $("mode-side").addEventListener("click", () => toggle("mode-side", "mode-slider", "side", "slider"));
  $("zoom-fit").addEventListener("click", () => toggle("zoom-fit", "zoom-100", "fit", "actual"));
  $("zoom-100").addEventListener("click", () => toggle("zoom-100", "zoom-fit", "actual", "fit"));
}

wire();
fetch("/api/config").then((r) => r.json()).then((c) => { config = c; }).catch(() => {});
