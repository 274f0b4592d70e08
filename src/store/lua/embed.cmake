# src/store/lua/embed.cmake - turns one Lua script into a C string literal.
#
#   cmake -DLUA_IN=src/store/lua/x.lua -DC_OUT=build/generated/lua/x.lua.inc -P embed.cmake
#
# The output is a sequence of C string literals, one per line of the script,
# that together spell the file byte for byte; src/store/redis_scripts.c #includes
# it as the initializer of the script's char array. Run by a custom command
# of the top-level CMakeLists.txt, so editing a .lua file regenerates its
# .inc and rebuilds what includes it. Only plain ASCII text (tab, newline,
# printable characters) is accepted: anything else stops the build rather
# than reach Redis in a form the file does not show.
cmake_policy(VERSION 3.18)
if(NOT DEFINED LUA_IN OR NOT DEFINED C_OUT)
  message(FATAL_ERROR "usage: cmake -DLUA_IN=<file.lua> -DC_OUT=<file.inc> -P embed.cmake")
endif()
# The bytes are checked in hex: file(READ) as text would drop a CR unseen.
file(READ "${LUA_IN}" hex HEX)
string(REGEX REPLACE "(..)" "\\1;" bytes "${hex}")
list(FILTER bytes EXCLUDE REGEX "^(09|0a|2[0-9a-f]|[3-6][0-9a-f]|7[0-9a-e]|)$")
if(bytes)
  message(FATAL_ERROR "${LUA_IN}: only tabs, newlines and printable ASCII may be embedded")
endif()
file(READ "${LUA_IN}" text)
if(text STREQUAL "")
  message(FATAL_ERROR "${LUA_IN}: empty script")
endif()
# Escapes first (backslash before the others), then one literal per line.
# '?' is escaped so no "??x" can be read as a trigraph.
string(REPLACE "\\" "\\\\" text "${text}")
string(REPLACE "\"" "\\\"" text "${text}")
string(REPLACE "?" "\\?" text "${text}")
string(REPLACE "\t" "\\t" text "${text}")
string(REPLACE "\n" "\\n\"\n\"" text "${text}")
get_filename_component(name "${LUA_IN}" NAME)
set(out "/* Generated from src/store/lua/${name} by src/store/lua/embed.cmake: do not edit. */\n\"${text}\"\n")
# Argument positions by name: the script's "-- @keys a b ..." and
# "-- @argv a b ..." lines become <SCRIPT>_KEY_<A> 1, ... and
# <SCRIPT>_ARGV_<A> 1, ... (1-based, as in Lua) in <C_OUT>.args.h (C_OUT
# with ".inc" replaced), which the C code that builds the arguments includes.
string(REGEX REPLACE "\\.lua$" "" script "${name}")
string(TOUPPER "${script}" SCRIPT)
set(args "/* Generated from src/store/lua/${name} by src/store/lua/embed.cmake: do not edit. */\n")
# Several lines of one kind continue each other (lines stay under
# luacheck's 120 columns).
file(STRINGS "${LUA_IN}" decls REGEX "^-- @(keys|argv) ")
foreach(kind keys argv)
  set(names)
  foreach(decl ${decls})
    if(decl MATCHES "^-- @${kind} (.*)$")
      string(REPLACE " " ";" more "${CMAKE_MATCH_1}")
      list(APPEND names ${more})
    endif()
  endforeach()
  if(NOT names)
    continue()
  endif()
  if(kind STREQUAL "keys")
    set(prefix "${SCRIPT}_KEY_")
  else()
    set(prefix "${SCRIPT}_ARGV_")
  endif()
  set(i 0)
  foreach(n ${names})
    math(EXPR i "${i} + 1")
    string(TOUPPER "${n}" N)
    string(APPEND args "#define ${prefix}${N} ${i}\n")
  endforeach()
  string(TOUPPER "${kind}" KIND)
  string(APPEND args "#define ${SCRIPT}_N${KIND} ${i}\n")
endforeach()
string(REGEX REPLACE "\\.inc$" ".args.h" H_OUT "${C_OUT}")

# Rewritten only when they changed, so a touched but unchanged script
# recompiles nothing.
function(write_if_changed path content)
  if(EXISTS "${path}")
    file(READ "${path}" old)
    if(old STREQUAL content)
      return()
    endif()
  endif()
  file(WRITE "${path}" "${content}")
endfunction()
write_if_changed("${C_OUT}" "${out}")
write_if_changed("${H_OUT}" "${args}")
