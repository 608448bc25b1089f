-- Image GET: the same already-rendered PNG (BENCH_PATH, e.g. /files/generated/NAME.png).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(here .. "common.lua")

local path = assert(os.getenv("BENCH_PATH"), "set BENCH_PATH")
local get
-- Built in init(): wrk sets the Host header only after the script has loaded.
init = function()
  get = wrk.format("GET", path)
end

request = function()
  return get
end

bench.finish()
