#!/usr/bin/env bash
# Walks the room-chat API (seed 004) against a running server:
#   cargo run --release -- serve &   then   scripts/roomchat-demo.sh
set -euo pipefail
base="${1:-http://127.0.0.1:8080}"
u="demo$RANDOM"
j() { python3 -c 'import sys,json; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
curl -fsS -X POST "$base/register" -d "{\"username\":\"$u\",\"password\":\"password123\"}"; echo
token=$(curl -fsS -X POST "$base/login" -d "{\"username\":\"$u\",\"password\":\"password123\"}" | j 'd["data"]["token"]')
room=$(curl -fsS -X POST "$base/api/room/create" -H "Authorization: $token" -d '{"name":"demo","description":"a demo room"}' | j 'd["data"]["ID"]')
curl -fsS -X POST "$base/api/message/send" -H "Authorization: Bearer $token" -d "{\"room_id\":$room,\"type\":\"text\",\"content\":\"hello\"}"; echo
curl -fsS "$base/api/message/list?room_id=$room&last_message_id=0&limit=20" -H "Authorization: $token"; echo
curl -fsS "$base/api/room/members?room_id=$room" -H "Authorization: $token"; echo
