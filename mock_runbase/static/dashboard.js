// The mock-runbase dashboard: polls GET /_mock/ui/state and renders it; its buttons and form
// call the control API. Plain JavaScript, no build step, no dependency.
"use strict";

(() => {
  const POLL_MS = 1000;
  const HIDDEN_POLL_MS = 5000;
  const TOKEN_KEY = "mock-runbase-admin-token";
  const $ = (id) => document.getElementById(id);

  let token = new URLSearchParams(location.search).get("token")
    || sessionStorage.getItem(TOKEN_KEY) || "";
  const filters = { key: "", status: "" };
  const rendered = {}; // section -> JSON last drawn, so an unchanged section is left alone
  const thumbnails = new Map(); // run id -> object URL of its thumbnail (or a pending promise)
  let pollTimer = null;
  let requestSeq = 0;

  // --- DOM and HTTP helpers ----------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function headers(extra) {
    const all = { Accept: "application/json", ...extra };
    if (token) all["X-Mock-Admin-Token"] = token;
    return all;
  }

  async function api(method, path, body) {
    const init = { method, headers: headers(), cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const type = response.headers.get("content-type") || "";
    const data = type.includes("json") ? await response.json() : null;
    if (!response.ok) {
      const error = new Error((data && data.error && data.error.message) || response.statusText);
      error.status = response.status;
      error.code = data && data.error && data.error.code;
      throw error;
    }
    return data;
  }

  // --- formatting ----------------------------------------------------------------------------

  function usd(micro) {
    const digits = Math.abs(micro) % 10000 === 0 ? 2 : 4;
    return (micro < 0 ? "-$" : "$") + (Math.abs(micro) / 1e6).toFixed(digits);
  }

  const clockTime = (iso) => (iso ? iso.slice(11, 23) : "");

  function after(iso, startIso) {
    const seconds = (Date.parse(iso) - Date.parse(startIso)) / 1000;
    return `+${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  }

  function bar(used, limit, label) {
    const share = limit > 0 ? Math.min(1, used / limit) : 0;
    const fill = h("span", { class: "fill" });
    fill.style.width = `${(share * 100).toFixed(1)}%`;
    const level = share >= 1 ? "full" : share >= 0.8 ? "high" : "ok";
    return h("div", { class: `bar ${level}`, title: label, role: "meter",
      "aria-valuemin": 0, "aria-valuemax": limit, "aria-valuenow": used }, fill);
  }

  function notice(message, kind) {
    const node = $("notice");
    node.textContent = message || "";
    node.hidden = !message;
    node.dataset.kind = kind || "info";
  }

  function connection(state, text) {
    const node = $("connection");
    node.dataset.state = state;
    node.textContent = text;
  }

  // --- sections ------------------------------------------------------------------------------

  function changed(section, value) {
    const json = JSON.stringify(value);
    if (rendered[section] === json) return false;
    rendered[section] = json;
    return true;
  }

  function renderClock(clock) {
    $("clock-kind").textContent = clock.virtual ? "virtual clock" : "real clock";
    $("clock-now").textContent = clock.now.replace("T", " ").replace("Z", " UTC");
    $("clock-now").dateTime = clock.now;
    for (const button of document.querySelectorAll("#advance-form button")) {
      button.disabled = !clock.virtual;
      button.title = clock.virtual ? "" : "Start the mock with --clock virtual to move time";
    }
  }

  function thumbnailCell(run) {
    if (run.status === "succeeded") {
      const img = h("img", { class: "thumb", alt: `${run.kind} of ${run.id}`,
        width: 80, height: Math.round((80 * run.height) / run.width) });
      showThumbnail(img, run);
      return h("td", {}, h("a", { href: run.output, target: "_blank", rel: "noopener" }, img));
    }
    return h("td", {}, h("div", { class: `thumb placeholder ${run.status}` }));
  }

  function showThumbnail(img, run) {
    const cached = thumbnails.get(run.id);
    if (typeof cached === "string") {
      img.src = cached;
      return;
    }
    const pending = cached || fetch(run.thumbnail, { headers: headers({ Accept: "image/png" }) })
      .then((response) => (response.ok ? response.blob() : Promise.reject(response.status)))
      .then((blob) => {
        const url = URL.createObjectURL(blob);
        thumbnails.set(run.id, url);
        return url;
      })
      .catch((problem) => {
        thumbnails.delete(run.id);
        throw problem;
      });
    thumbnails.set(run.id, pending);
    pending.then((url) => { img.src = url; }, () => { img.alt = "thumbnail unavailable"; });
  }

  function timeline(run) {
    const steps = [h("li", { class: "step done" }, "pending ", h("time", {}, clockTime(run.createdAt)))];
    const processing = run.processingAt;
    steps.push(h("li", { class: `step ${processing ? "done" : ""}` }, "processing ",
      processing ? h("time", {}, after(processing, run.createdAt)) : ""));
    const ended = run.completedAt;
    const end = ended ? run.status : "succeeded / failed";
    steps.push(h("li", { class: `step ${ended ? `done ${run.status}` : ""}` }, `${end} `,
      ended ? h("time", {}, after(ended, run.createdAt)) : ""));
    return h("ol", { class: "timeline" }, steps);
  }

  function statusCell(run) {
    const parts = [h("span", { class: `badge ${run.status}` }, run.status)];
    if (run.error) {
      parts.push(h("div", { class: "run-error" }, h("code", {}, run.error.code || "error"), " ",
        run.error.message));
    }
    if (run.refunded) parts.push(h("div", { class: "refund" }, `refunded ${usd(run.costUsd)}`));
    if (run.scenario !== "succeed") parts.push(h("div", { class: "scenario" }, run.scenario));
    return h("td", { class: "status" }, parts);
  }

  function renderRuns(runs) {
    $("runs-count").textContent = runs.length ? `${runs.length}` : "";
    $("runs-empty").hidden = runs.length > 0;
    if (!changed("runs", runs)) return;
    const size = (run) => [run.aspectRatio || "", run.resolution || ""].filter(Boolean).join(" \u00b7 ");
    $("runs").replaceChildren(...runs.map((run) => h("tr",
      { class: `run ${run.status}`, "data-id": run.id, "data-status": run.status },
      thumbnailCell(run),
      h("td", { class: "run-id" }, h("code", {}, run.id),
        h("div", { class: "muted" }, `key \u2026${run.keyLast4}`)),
      h("td", { class: "prompt" }, h("div", {}, run.prompt), h("div", { class: "muted" }, run.model)),
      h("td", { class: "size" }, h("div", {}, size(run) || "default"),
        h("div", { class: "muted" }, `${run.width}\u00d7${run.height}` +
          (run.kind === "video" ? ` \u00b7 ${run.durationS} s video` : ""))),
      h("td", { class: "cost" }, usd(run.costUsd)),
      h("td", {}, timeline(run)),
      statusCell(run))));
  }

  function renderAccounts(accounts) {
    $("accounts-empty").hidden = accounts.length > 0;
    if (!changed("accounts", accounts)) return;
    $("accounts").replaceChildren(...accounts.map((account) => h("article",
      { class: "account", "data-account": account.account },
      h("header", {}, h("strong", { class: "name", title: account.account }, account.account),
        h("span", { class: "muted" }, `${account.runs} run${account.runs === 1 ? "" : "s"}`)),
      h("dl", { class: "money" },
        h("dt", {}, "balance"), h("dd", { class: "balance" }, usd(account.balanceUsd)),
        h("dt", {}, "spent"), h("dd", { class: "spent" }, usd(account.spentUsd)),
        h("dt", {}, "of"), h("dd", {}, usd(account.startingBalanceUsd))),
      bar(account.spentUsd, account.startingBalanceUsd, "spend against the starting balance"),
      h("ul", { class: "keys" }, (account.keys || []).map(keyLine)))));
  }

  function keyLine(key) {
    const limitUsd = key.spendLimitCents === null || key.spendLimitCents === undefined
      ? null : key.spendLimitCents * 10000;
    const quota = key.usageQuota === null || key.usageQuota === undefined ? null : key.usageQuota;
    const flags = [key.disabled ? "disabled" : "", key.expiresAt ? `expires ${key.expiresAt}` : ""];
    return h("li", { class: "key", "data-key": key.last4 },
      h("div", { class: "key-head" }, h("code", {}, `\u2026${key.last4}`),
        h("span", { class: "muted" }, flags.filter(Boolean).join(", "))),
      h("div", { class: "key-spend" }, `spent ${usd(key.spentUsd)} `,
        limitUsd === null ? h("span", { class: "muted" }, "no spend limit")
          : [`of ${usd(limitUsd)} limit`, bar(key.spentUsd, limitUsd, "spend against the key's limit")]),
      h("div", { class: "key-quota" }, quota === null
        ? `${key.usageUsed} runs, no quota` : `${key.usageUsed} / ${quota} runs (quota)`));
  }

  function describeMatch(match) {
    const parts = Object.entries(match || {}).map(([name, value]) => `${name}=${value}`);
    return parts.length ? parts : ["every request"];
  }

  function describeBudget(rule) {
    if (rule.times !== null && rule.times !== undefined) return `next ${rule.times}`;
    if (rule.every !== null && rule.every !== undefined) return `every ${rule.every}th`;
    if (rule.probability !== null && rule.probability !== undefined) return `p=${rule.probability}`;
    return "always";
  }

  function renderRules(rules) {
    $("rules-empty").hidden = rules.length > 0;
    if (!changed("rules", rules)) return;
    $("rules").replaceChildren(...rules.map((rule) => {
      const { scenario, ...details } = rule.effect;
      return h("tr", { class: `rule ${rule.exhausted ? "exhausted" : ""}`, "data-id": rule.id },
        h("td", {}, describeMatch(rule.match).map((part) => h("div", {}, h("code", {}, part)))),
        h("td", {}, h("strong", {}, scenario),
          Object.values(details).map((detail) => h("div", { class: "muted" }, detail))),
        h("td", {}, describeBudget(rule), rule.exhausted ? h("div", { class: "muted" }, "used up") : ""),
        h("td", { class: "hits", title: `${rule.matches} matched, ${rule.hits} fired` },
          `${rule.hits}`, h("span", { class: "muted" }, ` / ${rule.matches}`)),
        h("td", {}, h("button", { type: "button", class: "link delete-rule",
          title: "Delete this rule", "aria-label": `Delete rule ${rule.id}`,
          onclick: () => act(() => api("DELETE", `/_mock/rules/${encodeURIComponent(rule.id)}`)) },
        "\u00d7")));
    }));
  }

  function renderRequests(requests, matched) {
    $("requests-count").textContent = matched > requests.length
      ? `newest ${requests.length} of ${matched}` : matched ? `${matched}` : "";
    $("requests-empty").hidden = requests.length > 0;
    if (!changed("requests", requests)) return;
    $("requests").replaceChildren(...requests.map((entry) => {
      const failed = entry.dropped || (entry.status || 0) >= 400;
      return h("tr", { class: `request ${failed ? "error" : ""}`, "data-seq": entry.seq },
        h("td", { class: "muted" }, entry.seq),
        h("td", {}, clockTime(entry.at)),
        h("td", {}, h("code", {}, `${entry.method} ${entry.path}${entry.query ? `?${entry.query}` : ""}`)),
        h("td", { class: "code" }, entry.dropped ? "dropped" : entry.status),
        h("td", {}, entry.errorCode ? h("code", {}, entry.errorCode) : ""),
        h("td", {}, entry.keyLast4 ? `\u2026${entry.keyLast4}` : ""),
        h("td", {}, entry.runId ? h("code", {}, entry.runId) : ""),
        h("td", { class: "muted" }, entry.durationMs.toFixed(1)));
    }));
  }

  // --- polling and actions -------------------------------------------------------------------

  async function refresh() {
    const seq = ++requestSeq;
    const query = new URLSearchParams();
    if (filters.key) query.set("key", filters.key);
    if (filters.status) query.set("status", filters.status);
    try {
      const state = await api("GET", `/_mock/ui/state?${query}`);
      if (seq !== requestSeq) return; // a newer refresh has started; its answer wins
      renderClock(state.clock);
      renderRuns(state.runs);
      renderAccounts(state.accounts);
      renderRules(state.rules);
      renderRequests(state.requests, state.requestsMatched);
      connection("live", "live");
      $("token-form").hidden = true;
      if (!$("rule-scenario").options.length) loadScenarios();
    } catch (problem) {
      if (seq !== requestSeq) return;
      if (problem.code === "admin_token_required") {
        connection("locked", "admin token required");
        $("token-form").hidden = false;
      } else {
        connection("offline", `offline: ${problem.message}`);
      }
    }
  }

  function schedule() {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(async () => {
      await refresh();
      schedule();
    }, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }

  async function act(action) {
    try {
      await action();
      notice("");
    } catch (problem) {
      notice(`${problem.code || "error"}: ${problem.message}`, "error");
    }
    await refresh();
    schedule();
  }

  async function loadScenarios() {
    const select = $("rule-scenario");
    let scenarios = {};
    try {
      scenarios = (await api("GET", "/_mock/scenarios")).scenarios;
    } catch (problem) {
      return; // the next successful poll tries again
    }
    select.replaceChildren(...Object.entries(scenarios).map(([name, description]) =>
      h("option", { value: name, title: description, selected: name === "fail" }, name)));
  }

  function ruleBody(form) {
    const value = (name) => form.elements[name].value.trim();
    const match = {};
    for (const name of ["endpoint", "resolution", "prompt_regex", "key"]) {
      if (value(name)) match[name] = value(name);
    }
    const effect = { scenario: value("scenario") };
    for (const name of ["code", "message"]) {
      if (value(name)) effect[name] = value(name);
    }
    const body = { match, effect };
    if (value("times")) body.times = Number(value("times"));
    return body;
  }

  function wire() {
    $("advance-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const seconds = Number($("advance-seconds").value || 0);
      act(() => api("POST", "/_mock/clock/advance", { seconds }));
    });
    for (const button of document.querySelectorAll("#advance-form .quick")) {
      button.addEventListener("click", () => {
        const seconds = Number(button.dataset.seconds);
        act(() => api("POST", "/_mock/clock/advance", { seconds }));
      });
    }
    const reset = $("reset");
    let armed = null;
    reset.addEventListener("click", () => {
      if (!armed) { // two clicks: a reset forgets every run, request and charge
        reset.textContent = "Really reset?";
        reset.classList.add("armed");
        armed = setTimeout(() => {
          armed = null;
          reset.textContent = "Reset";
          reset.classList.remove("armed");
        }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      reset.textContent = "Reset";
      reset.classList.remove("armed");
      for (const url of thumbnails.values()) if (typeof url === "string") URL.revokeObjectURL(url);
      thumbnails.clear();
      act(() => api("POST", "/_mock/reset"));
    });
    $("rule-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = event.target;
      const problemNode = $("rule-error");
      try {
        await api("POST", "/_mock/rules", ruleBody(form));
        problemNode.hidden = true;
        for (const name of ["resolution", "prompt_regex", "key", "code", "message", "times"]) {
          form.elements[name].value = "";
        }
      } catch (problem) {
        problemNode.textContent = problem.message;
        problemNode.hidden = false;
      }
      await refresh();
    });
    $("clear-journal").addEventListener("click", () =>
      act(() => api("DELETE", "/_mock/requests")));
    $("filters").addEventListener("submit", (event) => event.preventDefault());
    let typing = null;
    $("filter-key").addEventListener("input", (event) => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        filters.key = event.target.value.trim();
        refresh();
      }, 250);
    });
    $("filter-status").addEventListener("change", (event) => {
      filters.status = event.target.value;
      refresh();
    });
    $("token-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      token = $("token").value;
      sessionStorage.setItem(TOKEN_KEY, token);
      await refresh();
    });
    document.addEventListener("visibilitychange", schedule);
  }

  wire();
  refresh().then(schedule);
})();
