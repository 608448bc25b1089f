// A Runbase client in Node (18+, no packages): the README's check-client example.
// One job: create a run, poll it until it ends, download its file. Exit 0 when it handled
// what happened (a failed run or a refused request reported), 1 when it crashed.
const base = process.env.RUNBASE_BASE_URL;
const auth = { Authorization: `Bearer ${process.env.RUNBASE_API_KEY}` };
const pollMs = Number(process.env.POLL_INTERVAL_MS ?? 1000);
const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

async function call(method, url, body) {
  for (let attempt = 0; attempt < 8; attempt++) {
    let wait = Math.max(method === "GET" && url.includes("/runs/") ? pollMs : 0, 50 * 2 ** attempt);
    try {
      const answer = await fetch(url, {
        method,
        headers: body ? { ...auth, "Content-Type": "application/json" } : auth,
        body: body && JSON.stringify(body),
      });
      const data = await answer.arrayBuffer(); // a broken body throws here
      if (answer.ok) return data;
      const transient = [429, 500, 502, 503].includes(answer.status) ||
        (answer.status === 404 && url.includes("/files/"));
      if (!transient) throw Object.assign(new Error(`refused: ${answer.status}`), { refused: true });
      const retryAfter = Number(answer.headers.get("retry-after"));
      if (answer.status === 429 && retryAfter) wait = Math.max(wait, retryAfter * 1000);
    } catch (error) {
      if (error.refused) throw error;
    }
    await sleep(wait);
  }
  throw Object.assign(new Error(`${method} ${url}: still failing`), { refused: true });
}

const json = async (...args) => JSON.parse(new TextDecoder().decode(await call(...args)));

try {
  const created = await json("POST", `${base}/runs`,
    { model: "openai/gpt-image-2", input: { prompt: "a lighthouse at dawn" } });
  let run = created;
  for (let polls = 0; !["succeeded", "failed"].includes(run.status); polls++) {
    if (polls >= 10) { console.log(`gave up on ${created.id}`); process.exit(0); }
    await sleep(pollMs);
    run = await json("GET", `${base}/runs/${created.id}`);
  }
  if (run.status === "failed") console.log(`failed: ${run.error.message}`);
  else for (const url of run.output.urls) console.log(`got ${(await call("GET", url)).byteLength} bytes`);
} catch (error) {
  if (!error.refused) throw error;
  console.log(error.message);
}
