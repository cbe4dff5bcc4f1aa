module calico-accountant/bench/go_monzo

go 1.19
