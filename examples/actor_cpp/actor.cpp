// actor_cpp -- an actor whose state is a C++ object: a bank account kept
// in a std::map, built with placement new in the constructor and torn down
// by its destructor.  Four threads deposit into it at once; calls from each
// thread run in that thread's order, one at a time, so the account needs
// no lock of its own.  Checks the balance and exits 0 if it is exact.
// Built as C++17 and run by the test suite.
#include <atomic>
#include <cstdio>
#include <map>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <rayc.h>

namespace {

struct Account {
	std::string owner;
	std::map<std::string, int64_t> by_payer;
	int64_t balance = 0;
};

std::atomic<int> destroyed{0};

// Account(owner)
void account_init(rayc_ctx *ctx)
{
	const void *p;
	size_t n;
	if (rayc_arg_data(ctx, 0, &p, &n) != RAYC_OK) {
		rayc_fail(ctx, "Account needs its owner's name");
		return;
	}
	Account *a = new (rayc_actor_state(ctx)) Account();
	a->owner.assign(static_cast<const char *>(p), n);
}

void account_fini(void *state)
{
	static_cast<Account *>(state)->~Account();
	destroyed++;
}

// deposit(payer, amount) -> the new balance
void account_deposit(rayc_ctx *ctx)
{
	Account *a = static_cast<Account *>(rayc_actor_state(ctx));
	const void *p;
	size_t n;
	int64_t amount;
	if (rayc_arg_data(ctx, 0, &p, &n) != RAYC_OK ||
	    rayc_arg_i64(ctx, 1, &amount) != RAYC_OK) {
		rayc_fail(ctx, "deposit(payer, amount)");
		return;
	}
	if (amount <= 0) {
		rayc_fail(ctx, "deposit of %lld refused", (long long)amount);
		return;
	}
	a->by_payer[std::string(static_cast<const char *>(p), n)] += amount;
	a->balance += amount;
	rayc_return_i64(ctx, 0, a->balance);
}

// balance() -> balance, number of payers
void account_balance(rayc_ctx *ctx)
{
	Account *a = static_cast<Account *>(rayc_actor_state(ctx));
	rayc_return_i64(ctx, 0, a->balance);
	rayc_return_i64(ctx, 1, static_cast<int64_t>(a->by_payer.size()));
}

const rayc_actor_method account_methods[] = {
	{ "deposit", account_deposit },
	{ "balance", account_balance },
};
rayc_actor_class account_class = { "Account", sizeof(Account),
	                           account_init, account_fini,
	                           account_methods, 2 };

} // namespace

int main()
{
	if (rayc_init(nullptr) != RAYC_OK ||
	    rayc_actor_class_register(&account_class) != RAYC_OK) {
		std::fprintf(stderr, "init: %s\n", rayc_errmsg());
		return 1;
	}
	rayc_actor acct;
	rayc_actor_opts opts = {};
	opts.name = "savings";
	if (rayc_actor_create(&acct, "Account", &opts, RAYC_STR("ada")) !=
	    RAYC_OK) {
		std::fprintf(stderr, "create: %s\n", rayc_errmsg());
		return 1;
	}
	const int payers = 4, per = 250;
	std::vector<std::thread> threads;
	std::atomic<int> errors{0};
	for (int t = 0; t < payers; t++)
		threads.emplace_back([&, t] {
			rayc_actor h;
			// Each thread finds the account by name.
			if (rayc_actor_get_named(&h, "savings") != RAYC_OK) {
				errors++;
				return;
			}
			std::string payer = "payer" + std::to_string(t);
			for (int i = 1; i <= per; i++) {
				rayc_ref r;
				if (rayc_actor_call(&r, h, "deposit",
				                    RAYC_STR(payer.c_str()),
				                    RAYC_I64(i)) != RAYC_OK) {
					errors++;
					continue;
				}
				rayc_release(r);
			}
			// A refused deposit fails that call only.
			rayc_ref bad;
			rayc_view v;
			if (rayc_actor_call(&bad, h, "deposit",
			                    RAYC_STR(payer.c_str()),
			                    RAYC_I64(-1)) != RAYC_OK ||
			    rayc_get(bad, &v, 30000) != RAYC_ETASK)
				errors++;
			rayc_view_release(&v);
			rayc_release(bad);
			rayc_actor_release(h);
		});
	for (auto &th : threads)
		th.join();

	rayc_ref r[2];
	rayc_method_opts two = {};
	two.num_returns = 2;
	int64_t balance = 0, npayers = 0;
	if (rayc_actor_call_opts(r, acct, "balance", &two) != RAYC_OK ||
	    rayc_get_i64(r[0], &balance, 30000) != RAYC_OK ||
	    rayc_get_i64(r[1], &npayers, 30000) != RAYC_OK) {
		std::fprintf(stderr, "balance: %s\n", rayc_errmsg());
		return 1;
	}
	rayc_release(r[0]);
	rayc_release(r[1]);
	rayc_actor_release(acct);
	rayc_shutdown();

	const int64_t want = payers * (int64_t)per * (per + 1) / 2;
	std::printf("balance %lld from %lld payers (expected %lld), "
	            "destructor ran %d time(s), %d errors\n",
	            (long long)balance, (long long)npayers, (long long)want,
	            destroyed.load(), errors.load());
	return balance == want && npayers == payers && destroyed == 1 &&
	                       errors == 0
	               ? 0
	               : 1;
}
