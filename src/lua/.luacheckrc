-- luacheck configuration for the Redis scripts in src/lua (scripts/test.sh
-- runs `luacheck --config src/lua/.luacheckrc src/lua`). Redis runs scripts
-- in Lua 5.1 with these globals of its own; scripts may read, never set them.
std = "lua51"
read_globals = {"redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct"}
