#!/usr/bin/env bash
# lockboxctl grant extend end to end: the engineer asks for two more hours
# and waits (--wait), both stages approve, the command returns 0 with the
# grant's new end; a second extension is refused (the policy allows one);
# --json prints the grant with its extension.
source "$(dirname "$0")/lib.sh" "$1"
start_server
seed

ctl alice request create contoso prod --ticket TKT-7 --justification "invoices stuck" \
  --wait --wait-timeout 2m >"$WORK/grant.out" 2>/dev/null &
WAITER=$!
name="$(pending INTERNAL_REVIEW)"
[ -n "$name" ] || fail "the request never appeared"
ctl bob approve "$name" >/dev/null
ctl dana approve "$name" >/dev/null
wait "$WAITER" || fail "request create --wait exited $?"
grant="$(grep -o 'tenants/contoso/grants/[0-9a-f-]*' "$WORK/grant.out" | head -n 1)"
[ -n "$grant" ] || fail "no grant: $(cat "$WORK/grant.out")"
before="$(ctl alice --json grant "$grant" | sed -n 's/^ *"expireTime": "\(.*\)",*$/\1/p')"

ctl alice grant extend "contoso/${grant##*/}" --duration 2h --justification "the migration runs long" \
  --wait --wait-timeout 2m >"$WORK/extend.out" 2>"$WORK/extend.err" &
WAITER=$!
ext="$(pending INTERNAL_REVIEW)"
[ -n "$ext" ] || fail "the extension never appeared"
ctl bob request get "$ext" | grep -q "^Extends grant:  $grant\$" || fail "request get shows no grant"
ctl bob approve "$ext" >/dev/null
[ "$(pending CUSTOMER_REVIEW)" = "$ext" ] || fail "the extension skipped the customer"
ctl dana approve "$ext" >/dev/null
wait "$WAITER" || fail "grant extend --wait exited $?"
grep -q "Access extended until" "$WORK/extend.out" || fail "no new end: $(cat "$WORK/extend.out")"
grep -q "^Extended by:    $ext\$" "$WORK/extend.out" || fail "the extension is not shown on the grant"
grep -q "waiting for a decision on $ext" "$WORK/extend.err" || fail "--wait did not say what it waits for"

after="$(ctl alice --json grant "$grant" | sed -n 's/^ *"expireTime": "\(.*\)",*$/\1/p')"
moved=$(( $(date -d "$after" +%s) - $(date -d "$before" +%s) ))
[ "$moved" -eq 7200 ] || fail "the end moved by ${moved}s, not 2h ($before -> $after)"
ctl alice --json grant "$grant" | grep -q "\"$ext\"" || fail "grant --json lacks the extension"

set +e
ctl alice grant extend "$grant" --justification "once more" >/dev/null 2>"$WORK/again.err"
rc=$?
set -e
[ "$rc" -eq 11 ] || fail "a second extension should exit 11 (refused), got $rc"
grep -q "EXTENSIONS_EXHAUSTED\|approved extension" "$WORK/again.err" ||
  fail "the refusal should say why: $(cat "$WORK/again.err")"
ctl alice grant extend --help >/dev/null || fail "grant extend --help"
echo "1 passed, 0 failed"
