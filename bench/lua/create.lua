-- Create only: POST /runs with a valid gpt-image-2 body, the same request every time.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local bench = dofile(here .. "common.lua")

local create
-- Built in init(): wrk sets the Host header only after the script has loaded.
init = function()
  create = bench.create_request()
end

request = function()
  return create
end

bench.finish()
