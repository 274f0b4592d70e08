-- luacheck configuration for the Redis scripts in src/store/lua (scripts/test.sh
-- runs `luacheck --config src/store/lua/.luacheckrc src/store/lua`). Redis runs scripts
-- in Lua 5.1 with these globals of its own; scripts may read, never set them.
std = "lua51"
read_globals = {"redis", "KEYS", "ARGV", "cjson", "cmsgpack", "bit", "struct"}
