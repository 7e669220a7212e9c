/* refs.c -- refs across peers: FREE of copies held for their owner, and
 * borrowers.
 *
 * Borrowers.  A task that hands out a ref to an object another peer owns
 * (rayc_arg_ref) registers this peer with the owner (BORROW_ADD); when
 * the entry's last local ref goes, BORROW_DEL.  The owner counts each
 * borrower as a reference, so the object lives while any peer holds it.
 */
#include <stdlib.h>

#include "lineage/lineage.h"
#include "net/remote_int.h"
#include "testing.h"


void rayc__net_obj_released_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__net *net = rt->net;

	if (net == NULL)
		return;
	if (o->loc != 0 && o->owner == 0 && o->loc != net->self)
		rayc__remote_send_small(net, o->loc, RAYC__MSG_FREE, o->id, 0);
	if (o->borrowed) {
		rayc__remote_send_small(net, o->owner, RAYC__MSG_BORROW_DEL,
		                        o->id, 0);
		o->borrowed = false;
	}
	o->loc = 0;
}

void rayc__remote_unref_locked(rayc__rt *rt, rayc__obj *o)
{
	bool let_go = o->let_go;
	rayc_object_id id = o->id;

	rayc__obj_unref_locked(rt, o);
	if (!let_go)
		return;
	o = rayc__obj_find_locked(rt, id); /* gone, unless still held or
	                                      cached */
	if (o != NULL && o->cached)
		(void)rayc__cache_drop_locked(rt, o);
}

void rayc__net_borrow_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__net *net = rt->net;

	if (net == NULL || o->owner == 0 || o->owner == net->self ||
	    o->borrowed)
		return;
	o->borrowed = true;
	net->borrow_seq[o->owner]++; /* tlane.c: answers wait for it */
	rayc__remote_send_small(net, o->owner, RAYC__MSG_BORROW_ADD, o->id, 0);
}

/* Owner side: peer starts or stops borrowing o (one ref per borrower). */
static void borrow_add_locked(rayc__rt *rt, rayc__obj *o, uint32_t peer)
	RAYC_REQUIRES(rt->mu)
{
	for (uint16_t i = 0; i < o->nborrowers; i++)
		if (o->borrowers[i] == peer)
			return;
	if (o->nborrowers == o->borrowers_cap) {
		uint16_t cap = o->borrowers_cap ? o->borrowers_cap * 2 : 4;
		uint32_t *b = rayc__fault(RAYC__FAULT_BORROW)
		                      ? NULL
		                      : realloc(o->borrowers, cap * sizeof(*b));
		if (b == NULL) {
			/* Not counted, it would go while the peer holds it:
			 * kept instead (a leak until shutdown, not a loss). */
			rayc__obj_ref_locked(o);
			rayc__log(RAYC_LOG_ERROR, "RAYC-NET-NOMEM", "no memory to "
			          "record peer %u as a borrower of object "
			          "%016llx%016llx: it is kept until shutdown",
			          peer, (unsigned long long)o->id.hi,
			          (unsigned long long)o->id.lo);
			return;
		}
		o->borrowers = b;
		o->borrowers_cap = cap;
	}
	o->borrowers[o->nborrowers++] = peer;
	rayc__obj_ref_locked(o);
}

static void borrow_del_locked(rayc__rt *rt, rayc__obj *o, uint32_t peer)
	RAYC_REQUIRES(rt->mu)
{
	for (uint16_t i = 0; i < o->nborrowers; i++) {
		if (o->borrowers[i] != peer)
			continue;
		o->borrowers[i] = o->borrowers[--o->nborrowers];
		rayc__obj_unref_locked(rt, o);
		return;
	}
}

void rayc__remote_on_ref_msg(rayc__conn *c, int type, rayc__rd *rd)
{
	rayc__rt *rt = c->net->rt;
	rayc_object_id id = rayc__r_oid(rd);

	if (rd->bad)
		return;
	rayc__mutex_lock(&rt->mu);
	rayc__obj *o = rayc__obj_find_locked(rt, id);
	if (o != NULL) {
		if (type == RAYC__MSG_FREE && o->held_remote) {
			o->held_remote = false;
			o->let_go = true; /* sends and offers may still pin it */
			rayc__remote_unref_locked(rt, o);
		} else if (type == RAYC__MSG_BORROW_ADD) {
			borrow_add_locked(rt, o, c->peer);
		} else if (type == RAYC__MSG_BORROW_DEL) {
			borrow_del_locked(rt, o, c->peer);
		}
	}
	rayc__mutex_unlock(&rt->mu);
}
