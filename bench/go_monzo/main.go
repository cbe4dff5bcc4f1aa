// A Go port of monzo/calico-accountant's iptables parser, for bench/parser_vs_go.py.
//
// Provenance: github.com/monzo/calico-accountant, iptables/iptables.go (commit ea22244,
// "Merge pull request #7"), functions parseFrom and buildResult; MIT License, Copyright (c)
// 2019 Monzo Bank Limited.  The two-pass algorithm and both regular expressions are kept
// exactly: pass 1 remembers the packet count of every "-j DROP" rule of a cali-pi-/po-
// chain, pass 2 matches endpoint-chain rules, remembers each rule's target, and on a
// "Return if policy accepted" rule reports its count for the previous target (or that
// policy's DROP count when the accept count is 0), and reports "Drop if no policies passed
// packet" rules.  Changes, all outside the parse: the input is a file (or stdin) instead of
// an iptables-save child; there is no workload lookup (monzo maps each interface to a pod
// from the Calico datastore: here every interface counts as known, and a result carries
// the interface instead of the pod's name, namespace, app label and IPs); glog calls are
// dropped; the output is a summary (results per kind, packets summed), printed once.
// Standard library only: builds offline with `go build`.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
)

type ChainType int
type CountType int

const (
	ToWorkLoad ChainType = iota
	FromWorkLoad
	Drop CountType = iota
	Accept
	AcceptedDrop
)

func chainTypeFromString(str string) (ChainType, error) {
	switch str {
	case "fw":
		return FromWorkLoad, nil
	case "tw":
		return ToWorkLoad, nil
	default:
		return 0, fmt.Errorf("unsupported chain type: %s", str)
	}
}

type Result struct {
	Interface   string
	ChainType   ChainType
	CountType   CountType
	PacketCount int
	Target      string
}

type DropChain struct {
	PacketCount int
}

var (
	appendRegexp    = regexp.MustCompile(`^\[(\d+):\d+] -A cali-([tf]w)-(\S+).*-j (\S+)$`)
	dropPolicyRegex = regexp.MustCompile(`^\[(\d+):\d+] -A (cali-(p[io])-(\S+)).*-j DROP$`)
	dropSlice       = []byte("Drop if no policies passed packet")
	acceptSlice     = []byte("Return if policy accepted")
)

// parseFrom is monzo's parseFrom, minus the interface-to-workload map.
func parseFrom(stdout io.Reader) ([]*Result, error) {
	results := make([]*Result, 0, 1024)
	dropChains := map[string]DropChain{}

	// Create a buffer because we loop through the output twice.
	var buf bytes.Buffer
	tee := io.TeeReader(stdout, &buf)

	dropScanner := bufio.NewScanner(tee)
	for dropScanner.Scan() {
		line := dropScanner.Bytes()
		dropCapture := dropPolicyRegex.FindSubmatch(line)
		if dropCapture != nil {
			dropPacketCount, err := strconv.Atoi(string(dropCapture[1]))
			if err != nil {
				continue
			}
			dropChains[string(dropCapture[2])] = DropChain{PacketCount: dropPacketCount}
		}
	}

	scanner := bufio.NewScanner(&buf)
	lastTarget := ""
	for scanner.Scan() {
		line := scanner.Bytes()

		captures := appendRegexp.FindSubmatch(line)
		if captures == nil {
			continue
		}

		packetCount, err := strconv.Atoi(string(captures[1]))
		if err != nil {
			continue
		}

		isDrop := bytes.Contains(line, dropSlice)
		isAccept := bytes.Contains(line, acceptSlice)
		target := string(captures[4])

		if !(isDrop || isAccept) {
			lastTarget = target
			continue
		}

		typ, err := chainTypeFromString(string(captures[2]))
		if err != nil {
			return nil, err
		}
		iface := string(captures[3])

		acceptType := Accept
		if packetCount == 0 {
			if v, ok := dropChains[lastTarget]; ok {
				packetCount = v.PacketCount
				acceptType = AcceptedDrop
			}
		}

		switch {
		case isDrop:
			result, err := buildResult(iface, Drop, typ, packetCount, target)
			if err != nil {
				continue
			}
			results = append(results, result)
		case isAccept:
			result, err := buildResult(iface, acceptType, typ, packetCount, lastTarget)
			if err != nil {
				continue
			}
			results = append(results, result)
		}
	}

	if scanner.Err() != nil {
		return nil, scanner.Err()
	}
	return results, nil
}

func buildResult(iface string, countType CountType, chainType ChainType, packetCount int, target string) (*Result, error) {
	if countType == Drop && target != "DROP" {
		return nil, errors.New("drop count type but not a drop target")
	}
	return &Result{
		Interface:   iface,
		ChainType:   chainType,
		CountType:   countType,
		PacketCount: packetCount,
		Target:      target,
	}, nil
}

func main() {
	var input io.Reader = os.Stdin
	if len(os.Args) > 1 {
		file, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer file.Close()
		input = file
	}
	results, err := parseFrom(input)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	names := map[CountType]string{Drop: "drop", Accept: "accept", AcceptedDrop: "accepted_drop"}
	counts := map[CountType]int{}
	packets := map[CountType]int{}
	for _, result := range results {
		counts[result.CountType]++
		packets[result.CountType] += result.PacketCount
	}
	fmt.Printf("%d results\n", len(results))
	for _, kind := range []CountType{Accept, AcceptedDrop, Drop} {
		fmt.Printf("%s: %d results, %d packets\n", names[kind], counts[kind], packets[kind])
	}
}
