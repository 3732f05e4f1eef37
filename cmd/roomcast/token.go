package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomcast/roomcast/relay/proto"
)

// tokenRoles are the roles the relay accepts in a token (anything else is
// refused with HTTP 401; "viewer" is what a connection without a token is).
var tokenRoles = []string{"user", "mod", "admin", "bot"}

// tokenClaims builds the claims of `roomcast token`, refusing what the
// relay would refuse. withRooms says whether -rooms was given: not given
// means all rooms (no claim), given means exactly the listed patterns.
func tokenClaims(sub, name, role string, ttl time.Duration, withRooms bool, rooms, badges string) (jwt.MapClaims, error) {
	if !slices.Contains(tokenRoles, role) {
		return nil, fmt.Errorf("token: -role %q: the relay accepts only %s (a connection without a token is a viewer)",
			role, strings.Join(tokenRoles, ", "))
	}
	now := time.Now()
	claims := jwt.MapClaims{"sub": sub, "name": name, "role": role, "iat": now.Unix()}
	if ttl < 0 {
		return nil, fmt.Errorf("token: -ttl %s: want a lifetime, or 0 for none", ttl)
	}
	if ttl > 0 {
		claims["exp"] = now.Add(ttl).Unix()
	}
	if withRooms {
		list := splitList(rooms)
		if len(list) == 0 {
			return nil, fmt.Errorf("token: -rooms is empty: the user could join no room (leave -rooms out for all rooms)")
		}
		for _, p := range list {
			if pre, wild := strings.CutSuffix(p, "*"); !(wild && (pre == "" || proto.ValidRoom(pre))) && !proto.ValidRoom(p) {
				return nil, fmt.Errorf("token: -rooms %q matches no room: a room name, or a prefix ending in * (\"lobby:*\")", p)
			}
		}
		claims["rooms"] = list
	}
	if list := splitList(badges); len(list) > 0 {
		claims["badges"] = list
	}
	return claims, nil
}
